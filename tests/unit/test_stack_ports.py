"""The local stacks' fixed ports: every service and function inside the block each stack
reserves, and the dev, test and docs blocks apart."""

from emulators.stack import DEFAULT_PORT_BASE, FUNCTIONS, PORT_BLOCK, Stack


def test_every_port_of_a_stack_lies_in_its_reserved_block():
    for profile, base in DEFAULT_PORT_BASE.items():
        ports = Stack(profile, port_base=base).ports.values()
        assert min(ports) >= base and max(ports) < base + PORT_BLOCK, profile


def test_the_stacks_blocks_do_not_overlap():
    bases = sorted(DEFAULT_PORT_BASE.values())
    assert len(bases) >= 3 and all(low + PORT_BLOCK <= high for low, high in zip(bases, bases[1:], strict=False))


def test_functions_keep_the_ports_their_folders_name_after_the_services():
    base = DEFAULT_PORT_BASE["dev"]
    ports = Stack("dev", port_base=base).ports
    assert len(set(ports.values())) == len(ports)
    for name, function in FUNCTIONS.items():
        assert ports[name] == base + function.local_port_offset >= base + 10
    # the docs' examples name these: a new function must not move them
    assert ports["topup"] == 54319 and ports["wallets"] == 54323 and ports["usage"] == 54321
