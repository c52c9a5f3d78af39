"""Run one Bookline service in this process: ``bookline serve NAME``.

The service's app factory ``bookline.services.<key>.api:build_app(settings, telemetry)`` is imported
by its dotted path only when asked for, so one broken or missing service never stops the others
(or the rest of the CLI) from starting.
"""

from __future__ import annotations

import gc
import importlib
import os
import socket
from collections.abc import Callable
from typing import Any

from bookline.config import SERVICE_BY_NAME, SERVICES, TELEMETRY_STORE, ServiceSpec, Settings


class UnknownServiceError(ValueError):
    """A name that is neither a service.name nor a service key."""

    def __init__(self, name: str) -> None:
        valid = ", ".join(f"{s.name} ({s.key})" for s in SERVICES)
        super().__init__(f"unknown service {name!r}; valid names: {valid}")


def resolve_service(name: str) -> ServiceSpec:
    """The service called ``name``: its ``service.name`` ("booking-service") or key ("booking")."""
    try:
        return SERVICE_BY_NAME[name]
    except KeyError:
        raise UnknownServiceError(name) from None


class ServiceNotBuiltError(RuntimeError):
    """The service has no ``api`` module (yet); an import error inside one is not this."""


def app_factory(service: ServiceSpec) -> Callable[..., Any]:
    """``build_app`` of the service's api module."""
    path = f"bookline.services.{service.key}.api"
    try:
        module = importlib.import_module(path)
    except ModuleNotFoundError as exc:
        if exc.name is None or not path.startswith(exc.name):
            raise  # a module the service imports is missing: its traceback says more
        raise ServiceNotBuiltError(f"{service.name} has no app: module {path} not found") from None
    return module.build_app  # type: ignore[no-any-return]


# Python's cycle collector runs its young generation every 700 new containers, and now and then a
# full collection over every object the process holds, imported modules included (a few hundred
# thousand here): a full pass holds the interpreter for tens of milliseconds, in the middle of
# whichever request allocated last. A request makes a few thousand containers (more when traced: each
# span, its attributes, events and context), nearly all freed by reference counting, not by the
# collector. So the objects of start-up are frozen out of every collection, and the young
# generation is collected every 20,000 containers (bench/bookings.py: 32.5 to 26.0 ms of CPU per
# traced booking). The telemetry store gains too: each export leaves a thousand short-lived row and
# fact tuples, and in bench/telemetry.py full collections held its GIL 120 ms every few seconds.
GC_THRESHOLDS = (20_000, 20, 20)


def collect_garbage_less() -> None:
    """Freeze what start-up allocated and collect the young generation less often (a service process,
    before it serves)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*(max(ours, now) for ours, now in zip(GC_THRESHOLDS, gc.get_threshold(), strict=True)))


def shared_socket(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` that other processes bind too (``SO_REUSEPORT``): the kernel
    spreads incoming connections over the replicas of a service, and a replica that dies only stops
    taking new ones."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(service_name: str, settings: Settings) -> None:
    """Serve one service with uvicorn until SIGINT/SIGTERM, then flush its telemetry."""
    import uvicorn

    from bookline.telemetry import setup_telemetry

    service = resolve_service(service_name)
    os.umask(0o077)  # the databases, the queue and the mail this process creates are its owner's alone
    build_app = app_factory(service)  # before telemetry: an import error should be the first thing said
    # the store keeps its own telemetry to itself: the endpoint it would export to is usually the
    # store, where every export would be traced and exported again (a feedback loop)
    telemetry = setup_telemetry(service.name, settings, install_global=True, export=service is not TELEMETRY_STORE)
    try:
        app = build_app(settings, telemetry)
        collect_garbage_less()
        config = uvicorn.Config(
            app,
            # the telemetry store binds loopback unless told otherwise (its reads are open there)
            host=settings.telemetry_host if service is TELEMETRY_STORE else settings.host,
            port=settings.port_of(service.name),
            log_config=None,  # keep the JSON logging set up by telemetry
            access_log=False,  # the server spans already record every request
            lifespan="on",
            timeout_graceful_shutdown=3,
        )
        # exits with code 3 by itself when the app's startup fails, 1 when the port is taken
        server = uvicorn.Server(config)
        if settings.reuse_port:  # one replica of several: they bind the service's port together
            server.run(sockets=[shared_socket(config.host, config.port)])
        else:
            server.run()
    finally:
        telemetry.shutdown()
