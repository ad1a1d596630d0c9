"""Checks shared by the test scripts of this folder (each run as a script, so this folder is on
sys.path)."""


def raises(fn, text):
    """fn() must raise ValueError whose message holds `text`."""
    try:
        fn()
    except ValueError as e:
        assert text in str(e), f"{text!r} not in {e}"
        return
    raise AssertionError(f"no error; expected {text!r}")
