#!/usr/bin/env python3
"""Every kernel of kernels/*.cu compiles for each CUDA architecture of the build without register
spills: nvcc compiles each file's device code alone (-cubin) with ptxas -v, and this prints every
kernel's registers, stack frame and spills, and exits non-zero if any kernel spills (a stack frame
without spills, such as a small local array, is reported, not failed).

usage: check_kernel_spills.py NVCC SOURCE_ROOT ARCH [ARCH ...]   (ARCH: 80, 90, ...)
"""
import pathlib
import re
import subprocess
import sys
import tempfile

nvcc, root, archs = sys.argv[1], pathlib.Path(sys.argv[2]), sys.argv[3:]
if not archs:
    sys.exit(__doc__)

entry = re.compile(r"Compiling entry function '(\S+)' for '(sm_\d+)'")
frame = re.compile(r'(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads')
registers = re.compile(r'Used (\d+) registers')


def readable(mangled):
    """The kernel's name without namespaces and parameters (c++filt), or the mangled one."""
    try:
        name = subprocess.run(['c++filt', mangled], capture_output=True, text=True).stdout.strip()
    except OSError:
        return mangled
    name = re.sub(r'\(.*', '', name.replace('(anonymous namespace)::', ''))  # parameters
    return name.split('::')[-1] if '<' not in name else name.split('::', 2)[-1]


rows, problems = [], []
with tempfile.TemporaryDirectory() as out:
    for source in sorted((root / 'kernels').glob('*.cu')):
        for arch in archs:
            result = subprocess.run(
                [nvcc, '-std=c++17', '-O3', '--expt-relaxed-constexpr', f'-I{root}', '-cubin',
                 f'-arch=sm_{arch}', '-Xptxas', '-v', str(source), '-o', f'{out}/k.cubin'],
                capture_output=True, text=True)
            if result.returncode != 0:
                problems.append(f'{source.name} sm_{arch}: nvcc failed\n{result.stderr}')
                continue
            kernel = None
            for line in result.stderr.splitlines():
                if m := entry.search(line):
                    kernel = [source.name, readable(m.group(1)), m.group(2)]
                elif kernel and (m := frame.search(line)):
                    kernel += [int(m.group(1)), int(m.group(2)), int(m.group(3))]
                elif kernel and len(kernel) == 6 and (m := registers.search(line)):
                    rows.append(kernel + [int(m.group(1))])
                    if kernel[4] or kernel[5]:
                        problems.append(f'{kernel[0]} {kernel[1]} {kernel[2]}: {kernel[4]} bytes '
                                        f'spill stores, {kernel[5]} bytes spill loads')
                    kernel = None

print(f'{"file":<22} {"kernel":<44} {"arch":<6} {"regs":>4} {"stack":>5} {"spills":>6}')
for file, name, arch, stack, stores, loads, regs in rows:
    print(f'{file:<22} {name[:44]:<44} {arch:<6} {regs:>4} {stack:>5} {stores + loads:>6}')
for problem in problems:
    print(problem)
print(f'{len(rows)} kernel builds, {len(problems)} with spills or errors')
sys.exit(1 if problems or not rows else 0)
