"""The ``edgecv`` command: the typer app, every command registered in one list, and the one error boundary.

Commands live by wing (``cli/train.py``, ``compress.py``, ``measure.py``, ``flows.py``, ``device.py``); each
parses options, calls one library function and renders its result through ``cli/ui.py``. This is the only
place that turns an error into an exit code. TensorFlow is imported inside the commands, so
``edgecv --help`` stays fast.
"""

from __future__ import annotations

import functools
import signal
import sys

import typer
from typer.core import TyperCommand, TyperGroup

from edgecv.cli import compress, device, flows, imx500, measure, train, ui
from edgecv.errors import EdgecvError, ExitCode, check_interrupt, interrupt_noted, note_interrupt


class _FlagsShowNoValue:
    """An on/off flag takes no value, so its help shows none (typer would print ``<bool>``), ``--help`` included."""

    def get_params(self, ctx):
        params = super().get_params(ctx)
        for param in params:
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""
        return params


class Command(_FlagsShowNoValue, TyperCommand):
    pass


class Group(_FlagsShowNoValue, TyperGroup):
    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        """Option errors as one line too, not a usage box: for the console script and for a CliRunner alike."""
        from typer._click.exceptions import ClickException

        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except ClickException as e:
            message = e.format_message().replace("Value error, ", "")
            if message.strip():  # a bare ``edgecv`` has already shown its help, with nothing wrong to say
                ui.error(message)
            sys.exit(e.exit_code)
        except typer.Abort:
            ui.error("interrupted")
            sys.exit(ExitCode.INTERRUPTED)
        sys.exit(code if isinstance(code, int) else ExitCode.OK)


app = typer.Typer(
    cls=Group, help="Compress image classifiers for edge devices, and measure what each step costs and buys.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
)
device_app = typer.Typer(cls=Group, help="Benchmark on a Raspberry Pi or a Coral board: make a kit, merge its results.",
                         no_args_is_help=True)
app.add_typer(device_app, name="device")


def cli_errors(fn):
    """One line on stderr and the error's exit code instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            result = fn(*args, **kwargs)
            check_interrupt()  # an interrupt that native code swallowed still ends the command as one
            return result
        except KeyboardInterrupt:
            ui.error("interrupted")
            raise typer.Exit(ExitCode.INTERRUPTED) from None
        except Exception as e:
            # After a signal, whatever native code raised instead (a pybind11 RuntimeError, a TF error) is the
            # interrupt; without one, only edgecv's own errors become a line, and a bug keeps its traceback.
            if interrupt_noted():
                ui.error("interrupted")
                raise typer.Exit(ExitCode.INTERRUPTED) from None
            if not isinstance(e, EdgecvError):
                raise
            ui.error(str(e))
            raise typer.Exit(e.exit_code) from None

    return wrapper


COMMANDS = [  # (typer app, command name, function): the whole command surface in one place
    (app, "train", train.train),
    (app, "prune", compress.prune),
    (app, "prune-channels", compress.prune_channels),
    (app, "search", flows.search),
    (app, "quantize", compress.quantize),
    (app, "qat", compress.qat),
    (app, "cluster", compress.cluster),
    (app, "sensitivity", compress.sensitivity),
    (app, "benchmark", measure.benchmark),
    (app, "compress", flows.compress),
    (app, "check", measure.check),
    (device_app, "kit", device.kit),
    (device_app, "merge", device.merge),
    (device_app, "emulate", device.emulate),
    (app, "edgetpu", device.edgetpu),
    (app, "npu", device.npu),
    (app, "micro", device.micro),
    (app, "imx500", imx500.imx500),
    (app, "doctor", device.doctor),
]
for _app, _name, _fn in COMMANDS:
    _app.command(_name, cls=Command)(cli_errors(_fn))


def main() -> None:
    """The console script: SIGTERM ends a run as Ctrl-C does."""

    def interrupted(signum, _frame):
        note_interrupt(signum)  # native code may turn the KeyboardInterrupt into an error; stages re-check
        raise KeyboardInterrupt  # SIGTERM unwinds like Ctrl-C: temporary files are removed, one line, exit 130

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)
    typer.main.get_command(app).main(prog_name="edgecv")


if __name__ == "__main__":
    main()
