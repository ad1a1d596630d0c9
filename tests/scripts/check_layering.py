#!/usr/bin/env python3
"""The layers of the house (README, Layout): kernels/ includes only kernels/ (and CUDA and library
headers); host/ops includes only kernels/ and host/ops; host/model, host/data and host/io include
nothing from host/train or host/cli. Kernels are launched through gpu::launch (kernels/launch.cuh)
alone, so no other file of kernels/ or host/ holds a `<<<` launch, and dynamic shared memory is
declared through its FUSEDVAE_DYNAMIC_SHARED; thread-block clusters are used through
kernels/cluster.cuh alone. Prints every violation and exits non-zero if there is
one."""
import pathlib
import re
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(__file__).parents[2])
include = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)
sources = ('.h', '.cuh', '.cu', '.cpp')


def files(folder):
    return sorted(p for p in (root / folder).rglob('*') if p.suffix in sources)


def project_includes(path):
    return [name for name in include.findall(path.read_text()) if '/' in name]


allowed = {
    'kernels': ('kernels/',),
    'host/ops': ('kernels/', 'host/ops/'),
}
forbidden = {folder: ('host/train/', 'host/cli/') for folder in ('host/model', 'host/data', 'host/io')}

problems = []
for folder, prefixes in allowed.items():
    for path in files(folder):
        for name in project_includes(path):
            if not name.startswith(prefixes):
                problems.append(f'{path.relative_to(root)} includes "{name}" ({folder} may include '
                                f'only {", ".join(prefixes)})')
for folder, prefixes in forbidden.items():
    for path in files(folder):
        for name in project_includes(path):
            if name.startswith(prefixes):
                problems.append(f'{path.relative_to(root)} includes "{name}" ({folder} is below '
                                f'{", ".join(prefixes)})')


def only_in(owner, folders, pattern, what):
    """Lines matching `pattern` in the files of `folders` other than `owner`: problems."""
    for folder in folders:
        for path in files(folder):
            if path == root / owner:
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if pattern.search(line):
                    problems.append(f'{path.relative_to(root)}:{number}: {what}')


only_in('kernels/launch.cuh', ('kernels', 'host'), re.compile(r'<<<'),
        'a <<<>>> launch outside kernels/launch.cuh (use gpu::launch)')
# Dynamic shared memory through the launch helper's macro, which the SIMT harness (tests/simt/)
# maps to per-block storage; a raw `extern __shared__` would not compile there.
only_in('kernels/launch.cuh', ('kernels',), re.compile(r'\bextern\s+__shared__\b'),
        '`extern __shared__` (use FUSEDVAE_DYNAMIC_SHARED from kernels/launch.cuh)')
# Thread-block clusters through kernels/cluster.cuh alone, which the SIMT harness emulates.
only_in('kernels/cluster.cuh', ('kernels', 'host'),
        re.compile(r'cooperative_groups|\bthis_cluster\b|__cluster_'),
        'cooperative groups outside kernels/cluster.cuh (use its gpu::cluster functions)')

for problem in problems:
    print(problem)
print(f'{len(problems)} layering problem(s)')
sys.exit(1 if problems else 0)
