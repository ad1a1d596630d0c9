#!/usr/bin/env python3
"""The mutation check of the SIMT harness (tests/simt/mutants/README.md).

  mutate.py list MUTANTS_JSON SOURCE_ROOT
      one line per mutant, for CMake: name|test|kernel .cu files to build from the broken copy
      (each must include the mutated file, directly or not)
  mutate.py make MUTANTS_JSON SOURCE_ROOT NAME OUT_DIR
      OUT_DIR/kernels/: a copy of kernels/ with the mutant applied; OUT_DIR/status.txt says "ok",
      or why the mutant could not be applied (its `find` text is not in the file exactly once;
      the copy is then left unmutated and `run` fails, so a kernel edit cannot silently retire a
      mutant)
  mutate.py run MUTANTS_JSON NAME BINARY STATUS_FILE
      runs the mutant's harnessed test binary on its filter; exits 0 if the tests fail (the mutant
      is caught), 1 if they pass, and prints how it was caught
"""
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

INCLUDE = re.compile(r'^\s*#\s*include\s+"(kernels/[^"]+)"', re.M)


def load(mutants_json):
    return {m["name"]: m for m in json.loads(pathlib.Path(mutants_json).read_text())["mutants"]}


def reaches(root, source, target, seen=None):
    """Whether kernels file `source` is `target` or includes it, directly or not."""
    seen = seen if seen is not None else set()
    if source == target:
        return True
    if source in seen:
        return False
    seen.add(source)
    path = root / source
    if not path.exists():
        return False
    return any(reaches(root, name, target, seen) for name in INCLUDE.findall(path.read_text()))


def cmd_list(mutants_json, root):
    root = pathlib.Path(root)
    for m in load(mutants_json).values():
        for source in m["build"]:
            if not reaches(root, source, m["file"]):
                sys.exit(f'mutant {m["name"]}: {source} does not include {m["file"]}')
        print(f'{m["name"]}|{m["test"]}|{",".join(m["build"])}')


def cmd_make(mutants_json, root, name, out):
    root, out = pathlib.Path(root), pathlib.Path(out)
    m = load(mutants_json)[name]
    if (out / "kernels").exists():
        shutil.rmtree(out / "kernels")
    shutil.copytree(root / "kernels", out / "kernels")
    target = out / m["file"]
    text = target.read_text() if target.exists() else ""
    count = text.count(m["find"])
    if count == 1:
        target.write_text(text.replace(m["find"], m["replace"]))
        status = "ok"
    else:
        status = (f'the text to mutate occurs {count} times in {m["file"]} (must be once): the kernel '
                  f'changed; update mutant "{name}" in tests/simt/mutants/mutants.json')
    (out / "status.txt").write_text(status + "\n")


def how_caught(output):
    """The first sign of the failure, as one line."""
    asan = re.search(r"ERROR: AddressSanitizer: ([\w-]+)", output)
    if asan:
        frame = re.search(r"#0 0x[0-9a-f]+ in (?:void )?(.*)", output[asan.end():])
        function = frame.group(1).replace("(anonymous namespace)::", "").split("(")[0] if frame else ""
        where = f" in {function}" if function else ""
        access = re.search(r"(READ|WRITE) of size (\d+)", output[asan.end():])
        what = f" ({access.group(1).lower()} of {access.group(2)} bytes)" if access else ""
        return f"AddressSanitizer: {asan.group(1)}{what}{where}"
    harness = re.search(r"SIMT harness: kernel (\S+) .*?\): (.*?)(?:\" thrown|\n)", output)
    if harness:
        return f"harness error in {harness.group(1)}: {harness.group(2)[:220]}"
    failure = re.search(r": Failure\n(.*(?:\n.*){0,3})", output)
    if failure:
        lines = [line.strip() for line in failure.group(1).splitlines()
                 if line.strip() and line.strip() != "Failed" and "Google Test trace" not in line]
        return "the test's expectations: " + " / ".join(lines)[:260]
    return "the test failed (see its output)"


def cmd_run(mutants_json, name, binary, status_file):
    m = load(mutants_json)[name]
    status = pathlib.Path(status_file).read_text().strip()
    if status != "ok":
        print(f"[ mutant ] {name}: NOT APPLIED: {status}")
        return 1
    command = [binary, f"--gtest_filter={m['filter']}", "--gtest_break_on_failure"]
    env = dict(os.environ)
    env.setdefault("ASAN_OPTIONS", "detect_leaks=0:halt_on_error=1")
    try:
        result = subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, errors="replace", timeout=240)
        output, code = result.stdout, result.returncode
    except subprocess.TimeoutExpired as e:
        output = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        print(f"[ mutant ] {name}: caught: the test hung (240 s timeout)")
        return 0
    ran = re.search(r"\[==========\] Running (\d+) test", output)
    if ran is None:
        print(output[-3000:])
        print(f"[ mutant ] {name}: the test binary did not run its tests (exit {code})")
        return 1
    if code == 0:
        print(output[-2000:])
        print(f"[ mutant ] {name}: NOT CAUGHT: {m['what']} ({m['file']}); {m['filter']} passed")
        return 1
    print(f"[ mutant ] {name}: caught by {how_caught(output)}")
    print(f"           mutant: {m['what']} ({m['file']}); test: {m['test']} {m['filter']}")
    return 0


def main(argv):
    if len(argv) >= 4 and argv[1] == "list":
        cmd_list(argv[2], argv[3])
        return 0
    if len(argv) == 6 and argv[1] == "make":
        cmd_make(*argv[2:])
        return 0
    if len(argv) == 6 and argv[1] == "run":
        return cmd_run(*argv[2:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
