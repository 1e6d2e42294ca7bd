"""Is a TCP port free here? Asked before anything slow starts, so a taken port is one clear line.

`trainwise serve` binds its own address; `trainwise launch` binds torchrun's rendezvous store on
the node that hosts it. Both ask the same question here.
"""

from __future__ import annotations

import errno
import socket

from trainwise.errors import ConfigError

LOCAL_HOSTS = {"localhost", "127.0.0.1", "0.0.0.0", "::1"}


def check_port_free(host: str, port: int, flags: str, *, rendezvous: bool = False) -> None:
    """Raise ConfigError, naming `flags` (the arguments that chose the address), when `port`
    cannot be bound on `host` here.

    With `rendezvous` (torchrun's c10d store): a local name (localhost, 127.0.0.1, ...) is checked
    on every interface, since the store listens on all of them; and a host that cannot be bound
    for any reason other than a taken port (another node's name, an unresolvable one) is not ours
    to check: torchrun reports it.
    """
    if not 0 < port < 65536:
        raise ConfigError(f"{flags}: port {port} is out of range; expected 1..65535")
    bind_host = "" if rendezvous and host in LOCAL_HOSTS else host
    with socket.socket(socket.AF_INET6 if ":" in bind_host else socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((bind_host, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise ConfigError(
                    f"{flags}: port {port} is already in use on this machine; choose another port "
                    "(or stop the other job)"
                ) from None
            if not rendezvous:
                raise ConfigError(f"{flags}: the address cannot be bound ({e.strerror}); choose another") from None
