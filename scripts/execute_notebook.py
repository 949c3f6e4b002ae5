"""Execute one notebook on the tslab kernel with nbclient (nbconvert's engine), save the executed
notebook and its HTML, and print a JSON result on the last line of stdout.

Run by scripts/cookbook.ts and the test suite, with the Python that has Jupyter:
    python3 execute_notebook.py NOTEBOOK OUT.ipynb OUT.html [--kernel tslab] [--cell-timeout 300]
        [--progress FILE] [--result FILE]

--progress appends one JSON line when the kernel is up (its pid, so the runner can stop its session)
and one before each cell; --result also writes the result there. SIGTERM (the runner's time limit)
stops the run: the result says "timeout" and names the cell, and what ran so far is still saved.
"""
import argparse
import json
import os
import signal
import sys
import time

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError
from nbconvert import HTMLExporter

FIGURES_MIME = "application/vnd.jointly.figures+json"


def first_line(text, limit=400):
    lines = [l for l in str(text).strip().splitlines() if l.strip()]
    out = "\n".join(lines[:6])
    return out if len(out) <= limit else out[: limit - 3] + "..."


def failed_cell_message(cell, fallback):
    """tslab reports a failed cell on stderr, not as an error output: take the message from there."""
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            return "{}: {}".format(out.get("ename"), out.get("evalue"))
    stderr = "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("name") == "stderr")
    return first_line(stderr or fallback)


class NotebookDeadline(BaseException):
    """The runner's time limit for the whole notebook passed (it sent SIGTERM). A BaseException, like
    KeyboardInterrupt, so that no `except Exception` inside nbclient swallows it."""


def on_sigterm(signum, frame):
    raise NotebookDeadline("the runner's time limit passed")


class Progress:
    """Where the run is, for the runner: appended and flushed line by line, so a killed run leaves it."""

    def __init__(self, path):
        self.file = open(path, "a", encoding="utf-8") if path else None

    def note(self, **event):
        if self.file:
            self.file.write(json.dumps(event) + "\n")
            self.file.flush()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("notebook")
    ap.add_argument("out_ipynb")
    ap.add_argument("out_html")
    ap.add_argument("--kernel", default="tslab")
    ap.add_argument("--cell-timeout", type=int, default=300)
    ap.add_argument("--progress", default=None)
    ap.add_argument("--result", default=None)
    a = ap.parse_args()
    progress = Progress(a.progress)
    signal.signal(signal.SIGTERM, on_sigterm)

    nb = nbformat.read(a.notebook, as_version=4)
    client = NotebookClient(
        nb,
        kernel_name=a.kernel,
        timeout=a.cell_timeout,
        resources={"metadata": {"path": os.path.dirname(os.path.abspath(a.notebook))}},
    )
    result = {"notebook": a.notebook, "status": "passed", "cells": len(nb.cells)}
    start = time.time()
    index = None
    try:
        with client.setup_kernel():
            pid = getattr(getattr(client.km, "provisioner", None), "pid", None)
            progress.note(event="kernel", pid=pid)
            count = 0
            code_seen = 0
            for index, cell in enumerate(nb.cells):
                if cell.cell_type == "code":
                    code_seen += 1
                progress.note(event="cell", cell=index + 1, code_cell=code_seen if cell.cell_type == "code" else None)
                client.execute_cell(cell, index)
                if cell.cell_type == "code":
                    # tslab sends no execution_count; number the cells so the HTML reads "In [3]:".
                    count += 1
                    if cell.get("execution_count") is None:
                        cell.execution_count = count
    except (CellExecutionError, CellTimeoutError, DeadKernelError) as err:
        cell = nb.cells[index] if index is not None else {}
        code_cells = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
        result.update(
            status="failed",
            failed_cell=index + 1 if index is not None else None,
            failed_code_cell=code_cells.index(index) + 1 if index in code_cells else None,
            error=failed_cell_message(cell, err),
            error_type=type(err).__name__,
        )
    except NotebookDeadline as err:
        code_cells = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
        result.update(
            status="timeout",
            failed_cell=index + 1 if index is not None else None,
            failed_code_cell=code_cells.index(index) + 1 if index in code_cells else None,
            error=str(err),
            error_type="NotebookDeadline",
        )
    except Exception as err:  # kernel failed to start, etc.
        result.update(status="failed", failed_cell=None, error=first_line(err), error_type=type(err).__name__)
    result["seconds"] = round(time.time() - start, 2)
    # Saving what ran must not be cut short by a second signal.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)

    figures = {}
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if FIGURES_MIME in data:
                figures.update(data[FIGURES_MIME])
    result["figures"] = figures
    title = next((c.source.lstrip("# ").splitlines()[0] for c in nb.cells if c.cell_type == "markdown" and c.source.startswith("#")), None)
    result["title"] = title or os.path.basename(a.notebook)

    os.makedirs(os.path.dirname(os.path.abspath(a.out_ipynb)), exist_ok=True)
    nbformat.write(nb, a.out_ipynb)
    exporter = HTMLExporter(
        template_name="jointly",
        extra_template_basedirs=[os.path.join(os.path.dirname(os.path.abspath(__file__)), "nbconvert")],
    )
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": result["title"]}})
    with open(a.out_html, "w", encoding="utf-8") as f:
        f.write(body)
    if a.result:
        with open(a.result, "w", encoding="utf-8") as f:
            json.dump(result, f)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
