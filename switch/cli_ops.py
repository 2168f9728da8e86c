"""Operator and tester commands: demo, send, replay, journal, report.

Each command parses, loads the config and calls the library (switch.demo,
switch.client, switch.replay, switch.journal, switch.report); what is here is
presentation. Exit codes: 0 success; 1 the command ran and found a problem
(a demo answer the card book did not predict, a replay mismatch, no answer to
``send``, a TLS handshake that failed); 2 bad usage or config (also a TLS file
that will not load, or no --tls-ca for a listener that speaks TLS). No output
ever shows a clear PAN.
"""

from __future__ import annotations

import functools
import json
import ssl
import sys
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import click
import trio

import specs
from switch import codec
from switch.cli_common import (
    UsageError,
    config_option,
    echo_json,
    json_option,
    load,
    write_output,
)
from switch.cli_journal import journal, report, table
from switch.config import Config, ListenerConfig
from switch.demo import answer_timeout
from switch.errors import CodecError, ConfigError, reason_of
from switch.messages import response_code_meaning
from switch.replay import display_value

__all__ = ["COMMANDS"]


# -- shared helpers -----------------------------------------------------------------


def _target_options(func: Any) -> Any:
    func = click.option("--port", type=int, default=None, help="Override the listener's port.")(
        func
    )
    func = click.option("--host", default=None, help="Override the listener's host.")(func)
    return click.option(
        "--listener",
        "listener_name",
        default=None,
        help="Which [[listeners]] entry to send to (default: the first).",
    )(func)


def _tls_options(func: Any) -> Any:
    path = click.Path(dir_okay=False, path_type=Path)  # a missing file: named by _client_tls
    func = click.option(
        "--tls-key", type=path, default=None, help="Private key of --tls-cert (PEM)."
    )(func)
    func = click.option(
        "--tls-cert",
        type=path,
        default=None,
        help="Client certificate (PEM) for a listener with tls_client_ca; needs --tls-key.",
    )(func)
    return click.option(
        "--tls-ca",
        type=path,
        default=None,
        help="Speak TLS, verifying the switch's certificate against this CA (PEM).",
    )(func)


def _client_tls(
    command: str,
    listener: ListenerConfig,
    ca: Path | None,
    cert: Path | None,
    key: Path | None,
) -> ssl.SSLContext | None:
    """The client's TLS context from --tls-ca/--tls-cert/--tls-key, or exit 2 saying why."""
    from switch import tls

    if (cert is None) != (key is None):
        raise UsageError("--tls-cert and --tls-key go together")
    if ca is None:
        if cert is not None:
            raise UsageError(
                "--tls-cert needs --tls-ca (the CA that issued the switch's certificate)"
            )
        if listener.tls_cert is not None:
            mutual = listener.tls_client_ca is not None
            also = ", and --tls-cert/--tls-key: it requires a client certificate" if mutual else ""
            raise UsageError(
                f"listener {listener.name} uses TLS: give --tls-ca FILE, the CA that issued"
                f" its certificate{also}"
            )
        return None
    try:
        # Loaded one option at a time so that the error names the file that failed.
        with tls.naming_files(command, {"--tls-ca": ca}):
            context = tls.client_context(ca)
        if cert is not None:
            with tls.naming_files(command, {"--tls-cert": cert, "--tls-key": key}):
                context.load_cert_chain(cert, key)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    return context


def _tls_failed(target: tuple[str, int], exc: trio.BrokenResourceError) -> click.ClickException:
    """A TLS handshake that failed (exit 1), with the reason ssl gave."""
    return click.ClickException(
        f"TLS handshake with the switch at {target[0]}:{target[1]} failed: {reason_of(exc)}"
    )


def _missing_client_cert(listener: ListenerConfig, cert: Path | None) -> str:
    """Why a listener may have closed a TLS connection at once, if the config tells.

    Under TLS 1.3 a listener refuses a client without a certificate after the
    handshake, and closes without an alert that would say so: the client sees
    only an unexpected EOF.
    """
    if listener.tls_client_ca is None or cert is not None:
        return ""
    return (
        f"listener {listener.name} requires a client certificate (tls_client_ca):"
        " give --tls-cert and --tls-key"
    )


def _listener(config: Config, name: str | None) -> ListenerConfig:
    if name is None:
        return config.listeners[0]
    for listener in config.listeners:
        if listener.name == name:
            return listener
    known = ", ".join(li.name for li in config.listeners)
    raise UsageError(f"no listener named {name!r} in the config (have: {known})")


def _amount_minor(text: str, currency: str) -> int:
    from switch.report import CURRENCIES

    exponent = CURRENCIES.get(currency, ("", 2))[1]
    try:
        value = Decimal(text)
    except InvalidOperation:
        value = Decimal("NaN")
    if not value.is_finite() or value < 0:
        raise UsageError(f"--amount: {text!r} is not an amount like 10.00")
    minor = value * 10**exponent
    if minor != minor.to_integral_value():
        raise UsageError(
            f"--amount: {text!r} has more than {exponent} decimals for currency {currency}"
        )
    if minor >= 10**12:
        raise UsageError(f"--amount: {text!r} does not fit field 4 (12 digits of minor units)")
    return int(minor)


# -- demo ---------------------------------------------------------------------------


@click.command()
@config_option
@click.option(
    "--keep-running",
    is_flag=True,
    help="Leave the simulators and the switch up after the sample, until Ctrl-C.",
)
def demo(config_path: Path, keep_running: bool) -> None:
    """Start the issuer simulators and the switch, send a sample mix, print a summary.

    The mix: an approval per network, each decline card of the card book, a
    refund, an acquirer reversal of an approval and one issuer timeout (91,
    then an automatic reversal through the SAF). Exits 0 only if every answer
    is the one the card book predicts; state goes to var/ as switch.toml says.

    \b
    Example:
        switch demo
        switch demo --keep-running     # then: switch status, switch journal
    """
    from switch.demo import DemoError, run_demo

    config = load(config_path)

    def wait_forever() -> bool:
        import signal

        # Blocked first, so the signal is taken here rather than by Python's handler.
        signals = {signal.SIGINT, signal.SIGTERM}
        signal.pthread_sigmask(signal.SIG_BLOCK, signals)
        try:
            received = signal.sigwait(signals)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, signals)
        return received == signal.SIGINT  # Ctrl-C: the children got it too

    try:
        _, problems = run_demo(
            config,
            config_path,
            keep_running=keep_running,
            echo=click.echo,
            wait_forever=wait_forever,
        )
    except DemoError as exc:
        raise click.ClickException(str(exc)) from None
    if problems:
        click.echo("\nproblems:", err=True)
        for problem in problems:
            click.echo(f"  {problem}", err=True)
        sys.exit(1)
    click.echo("\nevery answer is the one the card book predicts")


# -- send ---------------------------------------------------------------------------


@click.command()
@click.option("--mti", default="0100", show_default=True, help="Message type.")
@click.option("--pan", required=True, help="Card number (never printed in clear).")
@click.option("--amount", required=True, help="Amount in major units, e.g. 10.00.")
@click.option("--currency", default="933", show_default=True, help="ISO 4217 numeric (F49).")
@click.option(
    "--processing-code", default="000000", show_default=True, help="F3; 200000 is a refund."
)
@click.option("--expiry", default="3012", show_default=True, help="F14, YYMM.")
@click.option("--cvv2", default=None, help="CVV2 (sent in F48, never printed).")
@click.option("--ecommerce", is_flag=True, help="Card-not-present e-commerce (F22 812, F25 59).")
@click.option("--eci", default=None, help="Electronic commerce indicator.")
@click.option("--cavv", default=None, help="3-D Secure authentication value.")
@click.option("--terminal", default="TERM0001", show_default=True, help="F41.")
@click.option("--merchant", default="SHOP00000000001", show_default=True, help="F42.")
@click.option("--stan", default=None, help="F11 (default: a fresh one).")
@click.option("--timeout", type=float, default=None, help="Seconds to wait for the answer.")
@click.option("--expect", "expect_rc", default=None, help="Exit 1 unless F39 is this code.")
@click.argument("fields", nargs=-1, metavar="[FIELD=VALUE]...")
@_target_options
@_tls_options
@config_option
@json_option
def send(
    mti: str,
    pan: str,
    amount: str,
    currency: str,
    processing_code: str,
    expiry: str,
    cvv2: str | None,
    ecommerce: bool,
    eci: str | None,
    cavv: str | None,
    terminal: str,
    merchant: str,
    stan: str | None,
    timeout: float | None,
    expect_rc: str | None,
    fields: tuple[str, ...],
    listener_name: str | None,
    host: str | None,
    port: int | None,
    tls_ca: Path | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    config_path: Path,
    as_json: bool,
) -> None:
    """Send one message from friendly fields and show request and answer side by side.

    STAN (F11), F7, F12/F13 and F41 get defaults; extra fields go as
    FIELD=VALUE. Exit 1 if no answer came (or, with --expect, another code).
    A listener with TLS needs --tls-ca (and, with tls_client_ca, --tls-cert
    and --tls-key).

    \b
    Example:
        switch send --pan 4111111111111111 --amount 10.00 --currency 933
        switch send --pan 4000000000000127 --amount 5.00 --cvv2 123 --ecommerce 37=123456789012
        switch send --pan 4111111111111111 --amount 1.00 --tls-ca pki/ca.pem
    """
    from switch.client import AcquirerClient, build_request

    config = load(config_path)
    listener = _listener(config, listener_name)
    ssl_context = _client_tls("send", listener, tls_ca, tls_cert, tls_key)
    extra: dict[str, str] = {}
    for item in fields:
        key, sep, value = item.partition("=")
        if not sep or not (key == "t" or (key.isdigit() and 1 <= int(key) <= 128)):
            raise UsageError(f"{item!r}: extra fields are FIELD=VALUE, e.g. 37=123456789012")
        extra[key] = value
    request = build_request(
        mti=mti,
        pan=pan,
        amount=_amount_minor(amount, currency),
        currency=currency,
        processing_code=processing_code,
        terminal=terminal,
        merchant=merchant,
        expiry=expiry or None,
        cvv2=cvv2,
        eci=eci,
        cavv=cavv,
        ecommerce=ecommerce,
        stan=stan,
        extra=extra,
    )
    spec = specs.load(listener.spec)
    try:
        codec.encode(request, spec)  # a field that cannot go is the operator's to fix
    except CodecError as exc:
        raise UsageError(str(exc)) from None
    wait = timeout or answer_timeout(config)
    target = (host or listener.host, port or listener.port)

    async def exchange() -> tuple[dict[str, str] | None, float | None, str | None]:
        """The answer and its latency, or why the switch closed the connection first."""
        client = await AcquirerClient.connect(
            *target, spec=listener.spec, framing=listener.framing, ssl_context=ssl_context
        )
        answer: dict[str, str] | None = None
        async with trio.open_nursery() as nursery:
            await nursery.start(client.run)
            try:
                ex = await client.submit(request)
                with trio.move_on_after(wait):
                    await ex.done.wait()
                answer = ex.answer
            except trio.BrokenResourceError as exc:  # e.g. a TLS 1.3 refusal, already read
                client.close_reason = client.close_reason or reason_of(exc)
            closed = client.closed.is_set()  # by the switch, before our own aclose
            await client.aclose()
        if answer is not None:
            return answer, (ex.latency or 0.0) * 1000, None
        if closed or client.close_reason is not None:
            return None, None, client.close_reason or ""
        return None, None, None

    try:
        answer, latency_ms, broken = trio.run(exchange)
    except OSError as exc:
        raise click.ClickException(
            f"cannot reach the switch at {target[0]}:{target[1]}: {exc}"
        ) from None
    except trio.BrokenResourceError as exc:
        raise _tls_failed(target, exc) from None
    if broken is not None:  # closed on us: say why at once rather than "no answer"
        why = "; ".join(filter(None, [broken, _missing_client_cert(listener, tls_cert)]))
        raise click.ClickException(
            f"the switch at {target[0]}:{target[1]} closed the connection without an answer"
            + (f": {why}" if why else "")
        )
    keys = sorted(
        set(request) | set(answer or {}),
        key=lambda k: -1 if k == "t" else int(k) if k.isdigit() else 999,
    )
    rc = (answer or {}).get("39")
    if as_json:
        echo_json(
            {
                "request": {k: display_value(k, v, spec) for k, v in request.items()},
                "answer": None
                if answer is None
                else {k: display_value(k, v, spec) for k, v in answer.items()},
                "response_code": rc,
                "meaning": None if rc is None else response_code_meaning(rc),
                "latency_ms": latency_ms,
            }
        )
    else:
        rows = []
        for key in keys:
            meaning = response_code_meaning(rc) if key == "39" and rc else ""
            rows.append(
                {
                    "field": key,
                    "name": spec.field_name(key),
                    "request": display_value(key, request.get(key), spec),
                    "answer": display_value(key, (answer or {}).get(key), spec),
                    "meaning": meaning,
                }
            )
        click.echo(
            table(
                rows,
                [
                    ("field", "field"),
                    ("name", "name"),
                    ("request", "request"),
                    ("answer", "answer"),
                    ("meaning", ""),
                ],
            )
        )
        if answer is None:
            click.echo(f"\nno answer within {wait:g}s from {target[0]}:{target[1]}")
        else:
            click.echo(f"\n{rc} {response_code_meaning(rc or '')} in {latency_ms or 0:.1f} ms")
    if answer is None or (expect_rc is not None and rc != expect_rc):
        sys.exit(1)


# -- replay -------------------------------------------------------------------------


@click.command()
@click.argument("trace", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--concurrency",
    "-n",
    type=click.IntRange(1, 1000),
    default=1,
    show_default=True,
    help="Requests in flight at once (lines are still sent in order).",
)
@click.option(
    "--timing",
    type=click.Choice(["original", "fast"]),
    default="original",
    show_default=True,
    help="Honour delay_ms/ts of the trace, or send as fast as allowed.",
)
@click.option(
    "--record",
    "record_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the answers as a new golden trace to this file.",
)
@click.option(
    "--timeout",
    type=float,
    default=None,
    help="Seconds to wait for each answer (default: longest issuer timeout + 5).",
)
@_target_options
@_tls_options
@config_option
@json_option
def replay(
    trace: Path,
    concurrency: int,
    timing: str,
    record_path: Path | None,
    timeout: float | None,
    listener_name: str | None,
    host: str | None,
    port: int | None,
    tls_ca: Path | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    config_path: Path,
    as_json: bool,
) -> None:
    """Replay a JSON Lines trace against a running switch and check every answer.

    Each line: {"request": {field: value} or "hex": "...", "expect": {field:
    matcher}, "delay_ms": N}. Matchers: a value (equal), "*present",
    "*absent", "*echo" (same as the request). Exit 1 on any mismatch, with a
    field-level diff per failing line. See README, "Replaying traces".

    \b
    Example:
        switch replay tests/traces/demo.jsonl
        switch replay big.jsonl --concurrency 20 --timing fast --record golden.jsonl
        switch replay tests/traces/demo.jsonl --tls-ca pki/ca.pem
    """
    from switch.replay import (
        LineResult,
        TraceError,
        describe,
        golden_line,
        read_trace,
        run_trace,
    )

    config = load(config_path)
    listener = _listener(config, listener_name)
    ssl_context = _client_tls("replay", listener, tls_ca, tls_cert, tls_key)
    try:
        lines = read_trace(trace)
    except TraceError as exc:
        raise UsageError(f"{trace}: {exc}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{trace}: not a UTF-8 text file") from None
    if not lines:
        raise UsageError(f"{trace}: no trace lines")
    spec = specs.load(listener.spec)
    wait = timeout or answer_timeout(config)
    target = (host or listener.host, port or listener.port)
    show_progress = not as_json and len(lines) >= 50

    def go(on_done: Callable[[LineResult], None] | None) -> list[LineResult]:
        return trio.run(
            functools.partial(
                run_trace,
                lines,
                host=target[0],
                port=target[1],
                spec=spec,
                framing=listener.framing,
                concurrency=concurrency,
                timing=timing,
                timeout=wait,
                on_done=on_done,
                ssl_context=ssl_context,
            )
        )

    try:
        if show_progress:
            with click.progressbar(length=len(lines), label="replaying", file=sys.stderr) as bar:
                results = go(lambda _result: bar.update(1))
        else:
            results = go(None)
    except OSError as exc:
        raise click.ClickException(
            f"cannot reach the switch at {target[0]}:{target[1]}: {exc}"
        ) from None
    except trio.BrokenResourceError as exc:
        raise _tls_failed(target, exc) from None
    by_number = {line.number: line for line in lines}
    failed = [r for r in results if not r.passed]
    if record_path is not None:
        golden = (golden_line(by_number[r.number], r.request, r.answer) for r in results)
        write_output(record_path, "".join(json.dumps(line) + "\n" for line in golden))
    if as_json:
        echo_json(
            {
                "lines": len(results),
                "passed": len(results) - len(failed),
                "failed": len(failed),
                "results": [
                    {
                        "line": r.number,
                        "passed": r.passed,
                        "mti": r.request.get("t"),
                        "pan": display_value("2", r.request.get("2")),
                        "response_code": (r.answer or {}).get("39"),
                        "latency_ms": r.latency_ms,
                        "error": r.error,
                        "diff": [
                            {
                                "field": d.field,
                                "expected": display_value(d.field, d.expected, spec),
                                "got": display_value(d.field, d.got, spec),
                                "message": describe(d, spec),
                            }
                            for d in r.diffs
                        ],
                    }
                    for r in results
                ],
            }
        )
    else:
        for r in results:
            if r.passed and len(results) > 200:
                continue  # long traces: only the failures line by line
            rc = (r.answer or {}).get("39", "--")
            latency = "" if r.latency_ms is None else f"{r.latency_ms:7.1f} ms"
            click.echo(
                f"line {r.number:>4}  {'PASS' if r.passed else 'FAIL'}  "
                f"{r.request.get('t', '----')}  {display_value('2', r.request.get('2')) or '-':<19}"
                f" rc {rc}  {latency}"
            )
            if r.error:
                click.echo(f"      {r.error}")
            for d in r.diffs:
                click.echo(f"      {describe(d, spec)}")
        click.echo(
            f"\n{len(results)} lines: {len(results) - len(failed)} passed, {len(failed)} failed"
            + (f"; golden trace written to {record_path}" if record_path else "")
        )
    if failed:
        if hint := _missing_client_cert(listener, tls_cert):
            click.echo(hint, err=True)
        sys.exit(1)


COMMANDS = [demo, send, replay, journal, report]
