#!/usr/bin/env python3
"""A seeded battery-fleet simulator that writes the snippet format (python_ref/dyad/snippets.py):
the default fleet of DyAD-style fault detection, since the real fleets cannot be fetched here.

    python3 python_ref/dyad/fleet_sim.py --out fleet            # fleet/fleet.{json,npy,csv}
    python3 python_ref/dyad/fleet_sim.py --out small --vehicles 20 --seed 3

Physics (every vehicle is a series string of `cells` cells in `modules` modules):

* **Cells.** Each cell is an equivalent circuit: open-circuit voltage OCV(SOC) (an NMC-like curve,
  flat in the middle, steep at both ends), a series resistance R0 and two RC pairs (a fast one,
  tau ~ 30 s, and a slow diffusion one, tau ~ 600 s). Terminal voltage while charging with current
  I (A, > 0 into the cell): V = OCV(SOC) + I R0 + v1 + v2, with v_k relaxing towards I R_k.
  Every cell has its own capacity, R0 and SOC: the spread of capacity (sigma ~1.5%), resistance
  (~8%) and state of charge (a per-vehicle imbalance, sigma from 0.3% to 3% across the fleet, so
  that some healthy packs are badly balanced) is what makes healthy vehicles differ.
* **Ageing.** Capacity fades linearly with mileage (per vehicle, ~8% per 100,000 km) and the
  resistances grow with it (~30% per 100,000 km).
* **Sessions.** Each vehicle has `sessions` charging sessions spread over its mileage history,
  each starting from a random SOC after a discharge that leaves a smaller cell lower (cells are
  balanced at the top), at an ambient temperature from the vehicle's climate plus the day's
  variation. 60% are AC slow charges (3.3 to 11 kW, constant current), the rest DC fast charges
  (multi-stage constant current, 1.0C, 0.7C, 0.4C, stepping down when the highest cell reaches
  4.00 V and 4.10 V); both end in a constant-voltage tail that holds the highest cell at 4.18 V
  until the current falls below 0.05C (the charging segment ends there). The current ramps up over
  the first minute.
* **Temperature.** A lumped thermal model per module: heat capacity C, heat I^2 R0 + I (v1 + v2)
  of its cells, cooling h (T - T_ambient) with a per-module spread of h; one temperature probe per
  module.
* **Sensors.** Cell voltages with 1.5 mV noise quantised to 1 mV, temperatures quantised to 1 C,
  current with 0.3 A noise quantised to 0.1 A, pack voltage quantised to 0.1 V, the BMS's SOC
  (the cells' mean, with a slow per-session estimation bias) quantised to 0.1%. Current is
  negative while charging, as in GB/T 32960 telemetry.
* **Channels**, DyAD's seven in its order: soc, current, min_temp, max_single_volt, max_temp,
  min_single_volt, volt; every `interval` seconds (default 10). Snippets are consecutive,
  non-overlapping windows of `steps` (128) samples of one charging segment (at most
  `snippets_per_session` of them).

Faults belong to a vehicle (`prevalence` of the fleet, the five kinds in turn) and develop with
mileage: severity(m) = s * clip((m - onset) / ramp, 0, 1), with the onset inside the vehicle's
history, so its early snippets look healthy. Label codes: 00 normal, 10 internal short, 20
high-resistance cell or connection, 30 accelerated fade of one cell, 40 thermal anomaly (a module
with poor cooling and a heating contact), 50 sensor fault (one cell's voltage sense line with
drift and intermittent spikes). At full severity:

* internal short: one cell self-discharges through a few ohms (a SOC deficit at the start of each
  session and a leak current during it);
* high resistance: one cell's R0 grows by `high_resistance` (a fraction);
* fade: one cell's capacity shrinks by `fade` (a fraction) on top of the pack's fade;
* thermal: one module's cooling falls by half and it gains `thermal_heat` W per (100 A)^2;
* sensor: one cell's reading drifts by up to `sensor_drift` V and spikes (up to 50 mV) at a rate
  of `sensor_spikes` per sample.

The severities are tuned so that the simple baseline (a vehicle's mean max-minus-min cell voltage,
python_ref/dyad/baseline.py) is clearly imperfect while the faults stay visible in the dynamics
(README, "Snippet data"). Same seed, same bytes.
"""
import argparse
import os
import sys
import time
from dataclasses import dataclass, fields

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from dyad.snippets import DYAD_CHANNELS, write_snippets  # noqa: E402

FAULTS = ("internal_short", "high_resistance", "fade", "thermal", "sensor")
FAULT_CODES = {None: "00", "internal_short": "10", "high_resistance": "20", "fade": "30",
               "thermal": "40", "sensor": "50"}

# NMC-like open-circuit voltage of one cell against its state of charge.
OCV_SOC = np.array([0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
OCV_V = np.array([3.30, 3.45, 3.55, 3.62, 3.66, 3.70, 3.75, 3.82, 3.90, 3.98, 4.07, 4.18])


@dataclass
class FleetConfig:
    """The simulator's settings; every field is also a command-line flag."""
    seed: int = 0
    vehicles: int = 150
    prevalence: float = 0.2
    sessions: int = 20
    snippets_per_session: int = 4
    steps: int = 128
    interval: float = 10.0
    cells: int = 96
    modules: int = 8
    capacity_ah: float = 150.0
    severity_min: float = 0.4        # each faulty vehicle's full severity s ~ U(min, 1)
    internal_short_soc: float = 0.05   # SOC deficit at a session's start at full severity
    internal_short_leak: float = 1.5  # A through the short at full severity
    high_resistance: float = 2.0
    fade: float = 0.12
    thermal_heat: float = 30.0
    sensor_drift: float = 0.01
    sensor_spikes: float = 0.05


@dataclass
class Fleet:
    """Per-vehicle draws: everything that stays fixed over a vehicle's sessions."""
    fault: list                 # fault kind per vehicle, or None
    severity: np.ndarray        # [V] full severity
    onset: np.ndarray           # [V] km where the fault starts developing
    ramp: np.ndarray            # [V] km over which it reaches full severity
    faulty_cell: np.ndarray     # [V] the cell (or module, for thermal) that carries the fault
    capacity: np.ndarray        # [V, cells] Ah when new
    r0: np.ndarray              # [V, cells] ohm when new
    soc_offset: np.ndarray      # [V, cells] imbalance at the top of charge
    h_spread: np.ndarray        # [V, modules] cooling factor
    fade_rate: np.ndarray       # [V] capacity lost per 100,000 km
    climate: np.ndarray         # [V] mean ambient temperature, C
    mileage: np.ndarray         # [V, sessions] km at each session, increasing


def draw_fleet(cfg, rng):
    """The vehicles: cell spreads, ageing, climate, mileage history and faults."""
    v, n = cfg.vehicles, cfg.cells
    if n % cfg.modules:
        raise ValueError(f"{n} cells do not fill {cfg.modules} modules equally")
    faulty = int(round(cfg.prevalence * v))
    fault = [None] * (v - faulty) + [FAULTS[i % len(FAULTS)] for i in range(faulty)]
    order = rng.permutation(v)
    fault = [fault[i] for i in order]
    start = rng.uniform(5e3, 80e3, v)
    span = rng.uniform(10e3, 40e3, v)
    steps = np.sort(rng.uniform(0, 1, (v, cfg.sessions)), axis=1)
    imbalance = np.exp(rng.uniform(np.log(0.002), np.log(0.012), v))
    return Fleet(
        fault=fault,
        severity=rng.uniform(cfg.severity_min, 1.0, v),
        onset=start + rng.uniform(0.0, 0.5, v) * span,
        ramp=rng.uniform(0.2, 0.5, v) * span,
        faulty_cell=rng.integers(0, n, v),
        capacity=cfg.capacity_ah * (1 + 0.015 * rng.standard_normal((v, n))),
        r0=0.8e-3 * (1 + 0.08 * rng.standard_normal((v, n))),
        soc_offset=imbalance[:, None] * rng.standard_normal((v, n)),
        h_spread=1 + 0.1 * rng.standard_normal((v, cfg.modules)),
        fade_rate=np.clip(rng.normal(0.08, 0.02, v), 0.02, None),
        climate=rng.uniform(0.0, 30.0, v),
        mileage=start[:, None] + span[:, None] * steps,
    )


def severity_at(fleet, mileage, kind):
    """[V, sessions] severity of fault `kind` at each session (0 for the other vehicles)."""
    has = np.array([f == kind for f in fleet.fault])[:, None]
    grown = np.clip((mileage - fleet.onset[:, None]) / fleet.ramp[:, None], 0.0, 1.0)
    return np.where(has, fleet.severity[:, None] * grown, 0.0)


def one_hot_cell(fleet, cells):
    """[V, cells] 1 at each vehicle's faulty cell."""
    return np.eye(cells)[fleet.faulty_cell]


@dataclass
class Sessions:
    """Every session of every vehicle, flattened to S = vehicles * sessions rows."""
    capacity: np.ndarray    # [S, cells] Ah
    r0: np.ndarray          # [S, cells] ohm
    soc: np.ndarray         # [S, cells] at the start
    leak: np.ndarray        # [S, cells] A of self-discharge
    ambient: np.ndarray     # [S] C
    t0: np.ndarray          # [S, modules] C at the start
    h: np.ndarray           # [S, modules] W/K
    extra_heat: np.ndarray  # [S, modules] W per A^2
    stages: np.ndarray      # [S, 3] stage currents, A
    soc_bias: np.ndarray    # [S] BMS estimation error
    sense: np.ndarray       # [S, cells] severity of a sense-line fault (sensor vehicles)
    drift: np.ndarray       # [S, cells] V of sense-line offset


def draw_sessions(cfg, fleet, rng):
    """Session conditions: ageing and fault severity at its mileage, start SOC, charger, weather."""
    v, k, n, m = cfg.vehicles, cfg.sessions, cfg.cells, cfg.modules
    age = fleet.mileage / 1e5                                      # [V, k]
    cell = one_hot_cell(fleet, n)[:, None, :]                      # [V, 1, n]
    sev = {kind: severity_at(fleet, fleet.mileage, kind)[:, :, None] for kind in FAULTS}

    capacity = fleet.capacity[:, None, :] * (1 - fleet.fade_rate[:, None, None] * age[:, :, None])
    capacity = capacity * (1 - cfg.fade * sev["fade"] * cell)
    r0 = fleet.r0[:, None, :] * (1 + 0.3 * age[:, :, None])
    r0 = r0 * (1 + cfg.high_resistance * sev["high_resistance"] * cell)

    # Cells are balanced at the top of charge; a discharge of D Ah leaves cell i at top_i - D/Q_i,
    # so a smaller (or faded) cell starts lower. A shorted cell has leaked since; the balancing
    # (which bleeds the other cells towards it) holds its deficit to internal_short_soc.
    start = rng.uniform(0.1, 0.6, (v, k))
    top = 0.97 + fleet.soc_offset[:, None, :] + 0.002 * rng.standard_normal((v, k, n))
    drawn = ((top.mean(axis=2) - start) * capacity.mean(axis=2))[:, :, None]
    soc = top - drawn / capacity - cfg.internal_short_soc * sev["internal_short"] * cell
    leak = cfg.internal_short_leak * sev["internal_short"] * cell

    thermal_module = (fleet.faulty_cell * m // n)
    mod_hot = np.eye(m)[thermal_module][:, None, :] * sev["thermal"][:, :, :1]
    ambient = fleet.climate[:, None] + 6.0 * rng.standard_normal((v, k))
    t0 = ambient[:, :, None] + rng.uniform(0, 5, (v, k, 1)) + 0.7 * rng.standard_normal((v, k, m))
    h = 30.0 * fleet.h_spread[:, None, :] * (1 - 0.5 * mod_hot)
    extra_heat = cfg.thermal_heat * mod_hot / 100.0 ** 2

    dc = rng.uniform(0, 1, (v, k)) < 0.4
    c_rate = cfg.capacity_ah * np.array([1.0, 0.7, 0.4])
    ac_amps = rng.choice([3.3e3, 7e3, 11e3], (v, k)) / (cfg.cells * 3.7)
    stages = np.where(dc[:, :, None], c_rate * rng.uniform(0.85, 1.0, (v, k, 1)),
                      ac_amps[:, :, None] * np.ones(3))
    sense = sev["sensor"] * cell

    def flat(a):
        return a.reshape((v * k,) + a.shape[2:])
    return Sessions(
        capacity=flat(capacity), r0=flat(r0), soc=flat(np.clip(soc, 0.0, 1.0)), leak=flat(leak),
        ambient=flat(ambient), t0=flat(t0), h=flat(h), extra_heat=flat(extra_heat),
        stages=flat(stages),
        soc_bias=flat(0.01 * rng.standard_normal((v, k))),
        sense=flat(sense), drift=flat(cfg.sensor_drift * sense))


def ocv(soc):
    return np.interp(soc, OCV_SOC, OCV_V)


def charge(cfg, s, rng):
    """Runs every session's charge for snippets_per_session * steps samples at once.

    Returns the seven channels [S, L, 7] (sensor readings) and whether the segment is still
    charging at each sample [S, L]."""
    n_s, n = s.soc.shape
    length = cfg.snippets_per_session * cfg.steps
    dt = cfg.interval
    modules = cfg.modules
    r1, tau1, r2, tau2 = 0.4e-3, 30.0, 0.6e-3, 600.0
    a1, a2 = np.exp(-dt / tau1), np.exp(-dt / tau2)
    heat_capacity = n // modules * 3000.0  # J/K per module: 3 kg cells at ~1000 J/(kg K)

    soc = s.soc.copy()
    v1 = np.zeros_like(soc)
    v2 = np.zeros_like(soc)
    temp = s.t0.copy()
    stage = np.zeros(n_s, dtype=int)
    active = np.ones(n_s, dtype=bool)
    current = np.zeros(n_s)
    out = np.zeros((n_s, length, 7), dtype=np.float32)
    charging = np.zeros((n_s, length), dtype=bool)
    rows = np.arange(n_s)
    v_cv, stage_v, i_end = 4.18, (4.00, 4.10), 0.05 * cfg.capacity_ah
    for t in range(length):
        # The charger: the stage's current, ramped up over the first minute, never more than what
        # holds the highest cell at v_cv (the constant-voltage tail).
        ramp = min(1.0, (t + 1) * dt / 60.0)
        open_circuit = ocv(soc)
        base = open_circuit + a1 * v1 + a2 * v2
        i_cv = np.min((v_cv - base) / (s.r0 + r1 * (1 - a1) + r2 * (1 - a2)), axis=1)
        target = s.stages[rows, stage] * ramp
        current = np.where(active, np.clip(np.minimum(target, i_cv), 0.0, None), 0.0)
        active &= ~((current < i_end) & (t * dt > 120.0) & (target > current))
        current = np.where(active, current, 0.0)

        i = current[:, None]
        v1 = a1 * v1 + (1 - a1) * r1 * i
        v2 = a2 * v2 + (1 - a2) * r2 * i
        volt = open_circuit + i * s.r0 + v1 + v2
        soc = soc + (i - s.leak) * dt / 3600.0 / s.capacity
        heat = (i * i * s.r0 + i * (v1 + v2)).reshape(n_s, modules, -1).sum(axis=2)
        heat += s.extra_heat * current[:, None] ** 2
        temp = temp + dt / heat_capacity * (heat - s.h * (temp - s.ambient[:, None]))
        v_max = volt.max(axis=1)
        stage = np.minimum(stage + (v_max >= np.where(stage == 0, stage_v[0], stage_v[1])), 2)

        out[:, t] = sense(cfg, s, rng, soc, current, volt, temp)
        charging[:, t] = active
    return out, charging


def sense(cfg, s, rng, soc, current, volt, temp):
    """One sample of the seven channels as the BMS reports them (noise, faults, quantisation)."""
    n_s, n = volt.shape
    cell = volt + 0.0015 * rng.standard_normal((n_s, n)) + s.drift
    # Only the faulty sense line (one cell per sensor vehicle) spikes: one draw per row suffices.
    spikes = rng.uniform(0, 1, (n_s, 1)) < cfg.sensor_spikes * s.sense
    cell = cell + spikes * rng.uniform(-0.05, 0.05, (n_s, 1))
    cell = np.round(cell, 3)
    probe = np.round(temp + 0.2 * rng.standard_normal(temp.shape))
    amps = np.round(-(current + 0.3 * rng.standard_normal(n_s)), 1)
    pack = np.round(volt.sum(axis=1) + 0.1 * rng.standard_normal(n_s), 1)
    bms_soc = np.round(100 * np.clip(soc.mean(axis=1) + s.soc_bias, 0, 1), 1)
    return np.stack([bms_soc, amps, probe.min(axis=1), cell.max(axis=1), probe.max(axis=1),
                     cell.min(axis=1), pack], axis=1)


def cut_snippets(cfg, fleet, channels, charging):
    """Non-overlapping windows of `steps` samples lying wholly inside a charging segment."""
    data, vehicle, label, mileage, segment = [], [], [], [], []
    k = cfg.sessions
    for row in range(channels.shape[0]):
        car, session = divmod(row, k)
        for w in range(cfg.snippets_per_session):
            window = slice(w * cfg.steps, (w + 1) * cfg.steps)
            if not charging[row, window].all():
                break
            data.append(channels[row, window])
            vehicle.append(f"v{car:04d}")
            label.append(FAULT_CODES[fleet.fault[car]])
            mileage.append(fleet.mileage[car, session])
            segment.append(session)
    return np.stack(data), vehicle, label, np.array(mileage), np.array(segment)


def simulate(cfg):
    """The whole fleet: (data [N, T, 7], vehicle, label, mileage, charge_segment, fleet)."""
    rng = np.random.default_rng(cfg.seed)
    fleet = draw_fleet(cfg, rng)
    sessions = draw_sessions(cfg, fleet, rng)
    channels, charging = charge(cfg, sessions, rng)
    return cut_snippets(cfg, fleet, channels, charging) + (fleet,)


def write_fleet(cfg, folder, name="fleet"):
    """Simulates and writes NAME.{json,npy,csv} plus NAME_vehicles.csv (each vehicle's fault,
    severity and onset: ground truth for diagnostics, not read by the loaders)."""
    data, vehicle, label, mileage, segment, fleet = simulate(cfg)
    settings = ", ".join(f"{f.name}={getattr(cfg, f.name)}" for f in fields(cfg))
    path = write_snippets(folder, name, data, vehicle, label, mileage, segment, DYAD_CHANNELS,
                          cfg.interval, description=f"fleet_sim.py: {settings}")
    with open(os.path.join(folder, name + "_vehicles.csv"), "w") as f:
        f.write("vehicle,label,fault,severity,onset_km,ramp_km,faulty_cell\n")
        for car, kind in enumerate(fleet.fault):
            f.write(f"v{car:04d},{FAULT_CODES[kind]},{kind or 'none'},"
                    f"{fleet.severity[car] if kind else 0:.3f},{fleet.onset[car]:.0f},"
                    f"{fleet.ramp[car]:.0f},{fleet.faulty_cell[car] if kind else -1}\n")
    return path, data.shape


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder to write NAME.{json,npy,csv} into")
    parser.add_argument("--name", default="fleet")
    for f in fields(FleetConfig):
        parser.add_argument("--" + f.name.replace("_", "-"), type=type(f.default),
                            default=f.default)
    args = parser.parse_args(argv)
    cfg = FleetConfig(**{f.name: getattr(args, f.name) for f in fields(FleetConfig)})
    return args, cfg


def main(argv=None):
    args, cfg = parse_args(argv)
    begin = time.perf_counter()
    path, shape = write_fleet(cfg, args.out, args.name)
    print(f"wrote {path}: {shape[0]} snippets of {shape[1]} steps x {shape[2]} channels, "
          f"{cfg.vehicles} vehicles, in {time.perf_counter() - begin:.1f} s")


if __name__ == "__main__":
    main()
