#!/usr/bin/env python3
"""Every GPU test runs on the SIMT harness or is declared GPU-only.

  check_coverage.py TESTS_DIR --harnessed FILE=FILTER ... --gpu-only-file FILE ...

A GPU test is a TEST whose body calls FUSEDVAE_REQUIRE_GPU. Each must be run by its file's
harnessed binary (tests/simt/CMakeLists.txt: fusedvae_simt_test(FILE FILTER), the filter's
positive patterns), or excluded there on purpose (its negative patterns), or sit in a file that is
GPU-only as a whole. So a new GPU test, a new op's test file included, cannot go unharnessed
without a line in tests/simt/CMakeLists.txt saying so. Prints every uncovered test; exit 1 if any.
"""
import fnmatch
import pathlib
import re
import sys

TEST = re.compile(r"^TEST(?:_F|_P)?\(\s*(\w+)\s*,\s*(\w+)\s*\)", re.M)


def gpu_tests(path):
    text = path.read_text()
    heads = list(TEST.finditer(text))
    for k, head in enumerate(heads):
        body = text[head.end():heads[k + 1].start() if k + 1 < len(heads) else len(text)]
        if "FUSEDVAE_REQUIRE_GPU" in body:
            yield f"{head.group(1)}.{head.group(2)}"


def matches(name, patterns):
    return any(fnmatch.fnmatchcase(name, p) for p in patterns if p)


def main(argv):
    tests_dir = pathlib.Path(argv[1])
    harnessed, gpu_only, mode = {}, set(), None
    for arg in argv[2:]:
        if arg in ("--harnessed", "--gpu-only-file"):
            mode = arg
        elif mode == "--harnessed":
            file, _, filt = arg.partition("=")
            positive, _, negative = filt.partition("-")
            harnessed[file] = (positive.split(":"), negative.split(":"))
        elif mode == "--gpu-only-file":
            gpu_only.add(arg)
    problems, counted = [], 0
    for path in sorted(tests_dir.glob("test_*.cpp")):
        file = path.stem
        for name in gpu_tests(path):
            counted += 1
            if file in gpu_only:
                continue
            if file not in harnessed:
                problems.append(f"{path.name}: {name} requires a GPU, and {file} is neither "
                                "harnessed nor GPU-only in tests/simt/CMakeLists.txt")
                continue
            positive, negative = harnessed[file]
            if matches(name, negative):
                continue
            if not matches(name, positive):
                problems.append(f"{path.name}: {name} requires a GPU but is not in the SIMT "
                                f"filter of {file} (run it there, or exclude it with a reason)")
    for problem in problems:
        print(problem)
    print(f"{counted} GPU tests, {len(problems)} neither harnessed nor declared GPU-only")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
