"""One check_port_free for serve's address and launch's rendezvous port: a taken or impossible
port is one line naming the flags that chose it, exit 2, before anything starts."""

from __future__ import annotations

import socket

import pytest

from trainwise.cli import main
from trainwise.errors import ConfigError
from trainwise.ports import check_port_free


@pytest.fixture
def taken_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def test_a_taken_port_names_the_flags(taken_port):
    with pytest.raises(ConfigError, match=f"--host 127.0.0.1 --port {taken_port}: port {taken_port} is already in use"):
        check_port_free("127.0.0.1", taken_port, f"--host 127.0.0.1 --port {taken_port}")
    with pytest.raises(ConfigError, match="is already in use"):
        check_port_free("localhost", taken_port, "--rdzv-endpoint", rendezvous=True)


def test_another_nodes_address_is_left_to_torchrun():
    # a name this machine cannot bind (here: cannot even resolve) may be node 0 elsewhere
    check_port_free("no-such-host.invalid", 29500, "--rdzv-endpoint", rendezvous=True)
    with pytest.raises(ConfigError, match="cannot be bound"):
        check_port_free("no-such-host.invalid", 29500, "--host no-such-host.invalid --port 29500")


@pytest.mark.parametrize("endpoint", ["127.0.0.1:99999", "127.0.0.1:0"])
def test_launch_refuses_a_port_out_of_range_in_one_line(endpoint, capsys):
    # before: 99999 reached socket.bind and ended in an OverflowError traceback
    code = main(["launch", "configs/lm-tiny.toml", "--nproc-per-node", "1", "--rdzv-endpoint", endpoint])
    err = capsys.readouterr().err
    assert code == 2 and "expected 1..65535" in err and len(err.strip().splitlines()) == 1, err
