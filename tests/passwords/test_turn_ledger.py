"""The turn ledger: turns per address in a busy spell, and each worker's next score, shared by
forked workers."""

from __future__ import annotations

import os

import pytest

from auth_service.passwords.turn_ledger import ADDRESS_SLOTS, NO_LOGIN, TurnLedger


def test_an_address_counts_its_turns_until_nothing_of_it_waits_or_runs() -> None:
    ledger = TurnLedger()
    with ledger.locked():
        ledger.arrived("10.0.0.1")
        ledger.arrived("10.0.0.1")
        ledger.started("10.0.0.1")
        ledger.left("10.0.0.1")
        ledger.started("10.0.0.1")
        assert ledger.turns_had("10.0.0.1") == 2
        assert ledger.turns_had("10.0.0.2") == 0
        ledger.left("10.0.0.1")  # its last login ended: the spell is over
        assert ledger.turns_had("10.0.0.1") == 0


def test_many_addresses_fit_as_their_spells_end() -> None:
    ledger = TurnLedger()
    with ledger.locked():
        for n in range(3 * ADDRESS_SLOTS):
            address = f"10.{n // 65536}.{n // 256 % 256}.{n % 256}"
            ledger.arrived(address)
            ledger.started(address)
            assert ledger.turns_had(address) == 1
            ledger.left(address)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork in a threaded pytest process
def test_workers_see_each_others_scores_and_a_dead_one_waits_for_nothing() -> None:
    ledger = TurnLedger()  # made before the fork, as uWSGI's master does
    published_read, published_write = os.pipe()
    done_read, done_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the other worker)
        try:
            with ledger.locked():
                ledger.publish(3)
            os.write(published_write, b"!")
            os.read(done_read, 1)
        finally:
            os._exit(0)
    try:
        assert os.read(published_read, 1) == b"!"
        with ledger.locked():
            ledger.publish(5)
            assert ledger.lowest_elsewhere() == 3
        os.write(done_write, b"!")
    finally:
        os.waitpid(pid, 0)
    with ledger.locked():
        assert ledger.lowest_elsewhere() == NO_LOGIN  # the worker that published 3 is gone


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork in a threaded pytest process
def test_what_a_killed_worker_left_counted_is_dropped_once_nobody_waits() -> None:
    ledger = TurnLedger()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (a worker killed mid-check: its login never leaves)
        with ledger.locked():
            ledger.arrived("10.0.0.9")
            ledger.started("10.0.0.9")
            ledger.publish(1)
        os._exit(0)
    os.waitpid(pid, 0)
    with ledger.locked():
        assert ledger.turns_had("10.0.0.9") == 1  # still present: its spell never ended
        ledger.publish(None)  # this worker's queue is empty, and no live worker waits
        assert ledger.turns_had("10.0.0.9") == 0
