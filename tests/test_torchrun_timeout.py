"""How long a process of a torchrun job waits for the others: LOFTUP_DIST_TIMEOUT, for
`loftup train` and `loftup upsample` alike, each with its own default."""

import pytest
import torch

from loftup.errors import UsageError
from loftup.extract import torchrun


@pytest.fixture
def joined(monkeypatch):
    """The keyword arguments ``init_distributed`` joins the group with (none joined here)."""
    import torch.distributed as dist

    calls = []
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")  # where torchrun's processes meet
    monkeypatch.setenv("MASTER_PORT", "29500")
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(torchrun, "join_process_group", lambda b, **kw: calls.append(kw))
    return calls


def test_upsample_waits_a_day_or_loftup_dist_timeout(joined, monkeypatch):
    """upsample's shards end at different times before the last barrier: a day by default;
    LOFTUP_DIST_TIMEOUT, the training's variable, was not read (a hung rank held a job a day)."""
    monkeypatch.delenv("LOFTUP_DIST_TIMEOUT", raising=False)
    torchrun.init_distributed(torch.device("cpu"))
    monkeypatch.setenv("LOFTUP_DIST_TIMEOUT", " 90 ")
    torchrun.init_distributed(torch.device("cpu"))
    assert [kw["timeout"].total_seconds() for kw in joined] == [86400, 90]


@pytest.mark.parametrize("value", ["0", "-5", "nan", "inf", "soon"])
def test_a_bad_loftup_dist_timeout_is_refused_before_upsample_joins_the_group(
    value, joined, monkeypatch
):
    monkeypatch.setenv("LOFTUP_DIST_TIMEOUT", value)
    with pytest.raises(UsageError) as e:
        torchrun.init_distributed(torch.device("cpu"))
    assert str(e.value) == (
        f"LOFTUP_DIST_TIMEOUT={value} is not a number of seconds > 0; set it to how long a "
        "process of a torchrun job may wait for the others (default 86400), or unset it"
    )
    assert joined == []


def test_upsample_that_waited_out_the_time_out_says_so_not_that_another_ended(monkeypatch):
    """With the wait now settable, a barrier that timed out (gloo's words) was told as 'another
    process of this run has ended ... its error says why': there was no such error."""
    from loftup.errors import LoftUpError

    monkeypatch.setenv("LOFTUP_DIST_TIMEOUT", "60")
    gloo = "[../gloo/transport/tcp/unbound_buffer.cc:81] Timed out waiting 60000ms for recv"
    with pytest.raises(LoftUpError) as e, torchrun._with_the_others():
        raise RuntimeError(gloo)
    assert str(e.value) == (
        "no word from another process of this run for 60 s (LOFTUP_DIST_TIMEOUT): one of them "
        "hangs or is still working on its share; where that is expected, set "
        "LOFTUP_DIST_TIMEOUT=SECONDS"
    )
    with pytest.raises(LoftUpError, match="another process of this run has ended"):
        with torchrun._with_the_others():
            raise RuntimeError("Connection closed by peer [127.0.0.1]:1234")


def test_rank_and_world_size_without_torchrun_are_one_line_before_the_group(joined, monkeypatch):
    """RANK and WORLD_SIZE exported by a job script for another launcher ran `loftup upsample`
    into torch's traceback ("environment variable MASTER_ADDR expected, but not set")."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("MASTER_ADDR")
    monkeypatch.delenv("MASTER_PORT")
    with pytest.raises(UsageError) as e:
        torchrun.init_distributed(torch.device("cpu"))
    assert str(e.value) == (
        "RANK and WORLD_SIZE are set (WORLD_SIZE=2) but MASTER_ADDR and MASTER_PORT not, so "
        "this process cannot meet the others; start the processes with torchrun, or unset RANK "
        "and WORLD_SIZE to run one process"
    )
    assert joined == []


@pytest.mark.parametrize("rank", ["0", "1"])  # rank 0 holds the meeting point, 1 calls it
def test_a_process_the_others_never_join_says_so_in_one_line(monkeypatch, rank):
    """RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT exported for another launcher, one process
    started: it waited its whole time-out (a day by default) and ended in torch's 44-line
    store traceback. Here the wait is 2 s; a free port, so nothing else answers."""
    import socket

    from loftup.errors import LoftUpError

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"RANK": rank, "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    for key, value in {**env, "LOFTUP_DIST_TIMEOUT": "2"}.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(LoftUpError) as e:
        torchrun.init_distributed(torch.device("cpu"))
    assert str(e.value) == (
        f"this process (RANK={rank} of WORLD_SIZE=2) waited 2 s (LOFTUP_DIST_TIMEOUT) at "
        f"127.0.0.1:{port} for the others, and not all came; start every process with "
        "torchrun, or unset RANK and WORLD_SIZE to run one"
    )


def test_training_meets_the_others_as_upsample_does(monkeypatch):
    """`loftup train` joined the group itself: the same exports ran it into torch's traceback."""
    from loftup.train.distributed import setup

    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.delenv("MASTER_PORT", raising=False)
    with pytest.raises(UsageError, match="^RANK and WORLD_SIZE are set .WORLD_SIZE=2. but MASTER"):
        setup("cpu")
