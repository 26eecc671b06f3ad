"""``bias-atlas view [RUNS_DIR]``: start the Streamlit viewer (``app.py``) on a folder of run folders.

The server binds to localhost unless ``--address`` says otherwise (exposing it lets visitors read the run folders).
Stopping this command (SIGTERM or SIGINT, e.g. Ctrl-C or ``kill PID``) stops the Streamlit server it started.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main", "serve", "streamlit_command"]

APP = Path(__file__).resolve().parents[2] / "app.py"


def streamlit_command(runs: str, *, address: str = "localhost", port: int = 8501) -> list[str]:
    """The ``streamlit run`` command line that serves the viewer on ``runs``."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP),
        "--server.address",
        address,
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--",
        runs,
    ]


def main(argv: Sequence[str] | None = None, *, prog: str = "bias-atlas view") -> int:
    """Start the viewer and wait for it; returns its exit code."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="?", default="runs", help="folder holding run folders (default: runs)")
    parser.add_argument("--address", default="localhost", help="interface to bind (default: localhost only)")
    parser.add_argument("--port", type=int, default=8501)
    args = parser.parse_args(argv)
    if not Path(args.runs).is_dir():
        raise FileNotFoundError(
            f"runs folder {args.runs!r} does not exist; run `bias-atlas run CONFIG` first or "
            "give the folder that holds your run folders."
        )
    return serve(streamlit_command(args.runs, address=args.address, port=args.port))


def serve(command: list[str], *, grace_s: float = 10.0) -> int:
    """Run ``command`` and wait for it; SIGTERM / SIGINT to this process are passed on to it (it is killed when it
    outlives ``grace_s`` after that), so the server never outlives the command. Returns its exit code."""
    child = subprocess.Popen(command)

    def stop(signum: int, _frame: object) -> None:
        child.send_signal(signal.SIGTERM)  # Streamlit shuts down cleanly on SIGTERM

    handled = (signal.SIGTERM, signal.SIGINT)
    main = threading.current_thread() is threading.main_thread()  # handlers can only be set there
    previous = {sig: signal.signal(sig, stop) for sig in handled} if main else {}
    try:
        return child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if child.poll() is None:
            child.terminate()
            try:
                child.wait(grace_s)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
