"""`make down` stops a stack whatever ports its processes hold: a stack started before
the functions' ports changed has one function listening on another's port."""

import socket
import sys

from emulators.stack import Stack, kill_group, port_open, wait_for
from infra.functions import PORT_BLOCK


def _free_port_base() -> int:
    """A block of ports no socket holds: the machine's other connections take ephemeral
    ports from the same range, and one on a fixed port made this test fail."""
    for base in range(55150, 60000, PORT_BLOCK):
        try:
            for port in range(base, base + PORT_BLOCK):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise AssertionError("no free block of ports")


def test_down_stops_processes_that_sit_on_each_others_ports(tmp_path):
    stack = Stack("unit", port_base=_free_port_base(), state_dir=tmp_path)
    first, second = "addon", "allocate"
    for name, port in ((first, stack.ports[second]), (second, stack.ports[first])):
        stack._spawn(name, [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"])
    started = dict(stack._load_state())
    try:
        for name in (first, second):
            wait_for(lambda name=name: port_open(stack.ports[name]), f"{name} to listen", 20)
        stack.down()
        assert not port_open(stack.ports[first]) and not port_open(stack.ports[second])
        assert stack._load_state() == {}
    finally:
        for pgid in started.values():  # whatever down() left behind, for the next run
            kill_group(pgid)
