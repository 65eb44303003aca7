"""Ports for test and lab listeners are never ones an outgoing connection could be given."""

import socket

from controlplane.ports import ephemeral_range, free_port


def test_a_free_port_lies_outside_the_ephemeral_range_and_can_be_bound() -> None:
    ephemeral = ephemeral_range()
    for _ in range(50):
        port = free_port()
        assert port not in ephemeral
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_a_port_is_not_handed_out_twice_while_others_are_left() -> None:
    ports = [free_port() for _ in range(500)]
    assert len(set(ports)) == len(ports)


def test_a_bound_port_is_not_handed_out() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", free_port()))
        taken = held.getsockname()[1]
        assert taken not in {free_port() for _ in range(500)}
