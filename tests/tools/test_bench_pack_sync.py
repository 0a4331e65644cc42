"""The sync-cost benchmark end to end, small: 30 daily 1 % deltas on a layered pack of 100 k entries."""
import os

import pytest

from callmark.pack_layers import LayerPolicy


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/io"), reason="needs Linux /proc/<pid>/io accounting")
def test_daily_deltas_write_a_small_share_of_the_base(tmp_path):
    from tools.bench.pack_sync import bench_sync, report
    r = bench_sync(100_000, str(tmp_path), days=30, lookups=2000)
    assert len(r["days"]) == 30 and r["compactions"] >= 1  # the chain ends equal to the table (asserted inside)
    assert r["apply_write_share"] <= 0.10, report(r)  # OS-accounted bytes, compactions included
    assert r["apply_file_write_share"] >= 1.0  # the copy-on-write baseline rewrites the whole file
    assert r["apply_peak_rss_max"] <= 128 << 20
    # a single overlay (no settled level) writes more per delta on the same deltas
    one = bench_sync(100_000, str(tmp_path), days=30, lookups=2000, policy=LayerPolicy(1e9, 0.14))
    assert set(one["levels"]) >= {"recent"} and one["levels"]["settled"] == 0
    assert one["apply_write_share"] > r["apply_write_share"], (report(one), report(r))
