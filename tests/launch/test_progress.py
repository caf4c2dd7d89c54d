"""The one progress display (``_launch.progress``)."""

from adamjax._launch.progress import Progress, resolve_mode
from adamjax._launch.recorders import _StageProgress


def test_resolve_mode_and_the_flow_bar():
    # Under pytest stderr is captured (not a terminal): the default is log lines.
    assert resolve_mode(None) == "log"
    assert [resolve_mode(m) for m in (True, False, "bar", "off")] == ["bar", "off", "bar", "off"]
    assert Progress(10, 0, "x", False).mode == "off"
    # The bar inside a batch of flows only with a terminal bar.
    assert _StageProgress("s", True).flow_bar
    assert not _StageProgress("s", None).flow_bar
    assert not _StageProgress("s", False).flow_bar
