"""The local stacks' fixed ports: every service and function inside the block each stack
reserves, and the dev, test and docs blocks apart."""

from emulators.stack import DEFAULT_PORT_BASE, FUNCTIONS, PORT_BLOCK, Stack


def test_every_port_of_a_stack_lies_in_its_reserved_block():
    for profile, base in DEFAULT_PORT_BASE.items():
        ports = Stack(profile, port_base=base).ports.values()
        assert min(ports) >= base and max(ports) < base + PORT_BLOCK, profile
    assert 10 + len(FUNCTIONS) <= PORT_BLOCK


def test_the_stacks_blocks_do_not_overlap():
    bases = sorted(DEFAULT_PORT_BASE.values())
    assert len(bases) >= 3 and all(low + PORT_BLOCK <= high for low, high in zip(bases, bases[1:], strict=False))


def test_functions_get_ports_in_name_order_after_the_services():
    base = DEFAULT_PORT_BASE["dev"]
    ports = Stack("dev", port_base=base).ports
    assert [ports[name] for name in sorted(FUNCTIONS)] == list(range(base + 10, base + 10 + len(FUNCTIONS)))
