import socket

from portal.ports import ephemeral_low, free_port, port_is_free


def test_a_free_port_is_never_one_an_outgoing_connection_could_take():
    low = ephemeral_low()
    ports = {free_port() for _ in range(50)}
    assert all(port < low for port in ports)
    assert all(port_is_free("127.0.0.1", port) for port in ports)


def test_a_port_held_by_a_listener_is_not_free():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", free_port()))
        listener.listen()
        assert not port_is_free("127.0.0.1", listener.getsockname()[1])
