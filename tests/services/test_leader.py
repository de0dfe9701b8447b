import time

from scheduler.leader import Lease


def test_one_holder_at_a_time_and_a_lapsed_lease_passes_on(redis):
    first = Lease(redis, holder="first", ttl_seconds=1.0, renew_seconds=0.25)
    second = Lease(redis, holder="second", ttl_seconds=1.0, renew_seconds=0.25)
    assert first.try_acquire() and first.held
    assert not second.try_acquire()
    assert first.try_acquire()  # renewing
    time.sleep(1.1)  # first stops renewing: its lease lapses, and it knows it
    assert not first.held
    assert second.try_acquire() and second.current_holder() == "second"
    assert not first.try_acquire()


def test_a_paused_holder_stops_acting_before_its_lease_lapses(redis):
    lease = Lease(redis, holder="me", ttl_seconds=1.0, renew_seconds=0.25)
    assert lease.try_acquire()
    time.sleep(0.8)  # past the lease minus its safety margin, not yet lapsed in Redis
    assert redis.get("podium:scheduler:leader") == b"me"
    assert not lease.held
