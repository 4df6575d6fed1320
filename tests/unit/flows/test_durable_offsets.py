from flows.engine.durable import DurableOffsets

T = "crm.public.contacts"


def test_without_batches_in_flight_the_source_offset_is_safe() -> None:
    d = DurableOffsets()
    assert d.resume_offset(T, 0, 42) == 42


def test_an_unconfirmed_batch_holds_the_resume_offset_at_its_start() -> None:
    d = DurableOffsets()
    d.emitted(T, 0, 0, 100)
    d.emitted(T, 0, 100, 250)
    assert d.resume_offset(T, 0, 250) == 0
    d.durable(T, 0, 100)
    assert d.resume_offset(T, 0, 250) == 100 and d.in_flight(T, 0) == 1
    d.durable(T, 0, 250)
    assert d.resume_offset(T, 0, 250) == 250 and d.in_flight(T, 0) == 0


def test_partitions_are_tracked_apart() -> None:
    d = DurableOffsets()
    d.emitted(T, 0, 0, 10)
    d.emitted(T, 1, 5, 9)
    d.durable(T, 1, 9)
    assert d.resume_offset(T, 0, 10) == 0
    assert d.resume_offset(T, 1, 9) == 9


def test_a_confirmation_covers_every_older_batch() -> None:
    d = DurableOffsets()
    for start in range(0, 50, 10):
        d.emitted(T, 0, start, start + 10)
    d.durable(T, 0, 30)
    assert d.resume_offset(T, 0, 50) == 30
