"""The Prometheus registry: what it renders parses back to what was recorded."""

from __future__ import annotations

import math
import multiprocessing
import os

import pytest
from prometheus_client import multiprocess
from prometheus_client.parser import text_string_to_metric_families

from offload.server.metrics import (
    CONTENT_TYPE,
    LATENCY_BUCKETS,
    MULTIPROC_ENV,
    Counter,
    Histogram,
    Registry,
)


def parsed(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample in ``text``, keyed by name and labels, as prometheus_client reads it."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def key(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return name, frozenset(labels.items())


def origin_metrics(registry: Registry) -> dict[str, Counter | Histogram]:
    """The metrics the origin defines, as it will define them."""
    return {
        "requests": registry.counter(
            "offload_requests_total", "Requests answered.", ("site", "status")
        ),
        "hits": registry.counter("offload_cache_hits_total", "Cache hits.", ("cache",)),
        "misses": registry.counter("offload_cache_misses_total", "Cache misses.", ("cache",)),
        "storage": registry.histogram(
            "offload_storage_seconds", "Storage latency.", LATENCY_BUCKETS, ("operation",)
        ),
        "bytes": registry.counter("offload_bytes_sent_total", "Body bytes sent.", ("site",)),
    }


def test_the_content_type_is_text_format_0_0_4():
    assert CONTENT_TYPE == "text/plain; version=0.0.4; charset=utf-8"


def test_latency_buckets_run_from_one_millisecond_to_ten_seconds():
    assert LATENCY_BUCKETS[0] == 0.001
    assert LATENCY_BUCKETS[-1] == 10
    assert list(LATENCY_BUCKETS) == sorted(set(LATENCY_BUCKETS))


def test_the_origins_metrics_parse_back_to_the_recorded_values():
    registry = Registry()
    m = origin_metrics(registry)
    m["requests"].inc(site="blog", status="200")
    m["requests"].inc(site="blog", status="200")
    m["requests"].inc(site="shop", status="404")
    m["hits"].inc(cache="meta")
    m["misses"].inc(3, cache="body")
    m["storage"].observe(0.004, operation="head")
    m["storage"].observe(0.2, operation="get")
    m["bytes"].inc(20_480, site="blog")
    m["bytes"].inc(0.5, site="shop")

    samples = parsed(registry.render())

    assert samples[key("offload_requests_total", site="blog", status="200")] == 2
    assert samples[key("offload_requests_total", site="shop", status="404")] == 1
    assert samples[key("offload_cache_hits_total", cache="meta")] == 1
    assert samples[key("offload_cache_misses_total", cache="body")] == 3
    assert samples[key("offload_bytes_sent_total", site="blog")] == 20_480
    assert samples[key("offload_bytes_sent_total", site="shop")] == 0.5
    assert samples[key("offload_storage_seconds_count", operation="head")] == 1
    assert samples[key("offload_storage_seconds_sum", operation="get")] == 0.2
    assert samples[key("offload_storage_seconds_bucket", operation="get", le="0.25")] == 1
    assert samples[key("offload_storage_seconds_bucket", operation="get", le="0.1")] == 0


def test_help_and_type_lines_come_before_the_samples():
    registry = Registry()
    registry.counter("offload_requests_total", "Requests answered.", ("site",)).inc(site="a")
    assert registry.render() == (
        "# HELP offload_requests_total Requests answered.\n"
        "# TYPE offload_requests_total counter\n"
        'offload_requests_total{site="a"} 1\n'
    )


def test_families_parse_with_their_types_and_help():
    registry = Registry()
    origin_metrics(registry)
    registry.gauge("offload_open_streams", "Streams in flight.")
    families = {f.name: f for f in text_string_to_metric_families(registry.render())}
    # prometheus_client names a counter family without its _total suffix.
    assert families["offload_requests"].type == "counter"
    assert families["offload_requests"].documentation == "Requests answered."
    assert families["offload_storage_seconds"].type == "histogram"
    assert families["offload_open_streams"].type == "gauge"


def test_label_values_are_escaped_and_parse_back_unchanged():
    registry = Registry()
    counter = registry.counter("odd_total", "Odd labels.", ("value",))
    nasty = 'back\\slash "quoted"\nnew line, {braces}=, é ✓'
    counter.inc(value=nasty)
    text = registry.render()
    assert 'odd_total{value="back\\\\slash \\"quoted\\"\\nnew line, {braces}=, é ✓"} 1' in text
    assert parsed(text) == {key("odd_total", value=nasty): 1}


def test_help_text_escapes_backslashes_and_newlines_but_not_quotes():
    registry = Registry()
    registry.gauge("g", 'Line one\nline "two" \\ three')
    text = registry.render()
    assert '# HELP g Line one\\nline "two" \\\\ three\n' in text
    [family] = text_string_to_metric_families(text)
    assert family.documentation == 'Line one\nline "two" \\ three'


def test_histogram_buckets_are_cumulative_and_end_with_inf():
    registry = Registry()
    histogram = registry.histogram("latency_seconds", "Latency.", [0.1, 1, 10])
    for value in (0.05, 0.1, 0.5, 1, 5, 50, 50):
        histogram.observe(value)
    samples = parsed(registry.render())
    buckets = {le: samples[key("latency_seconds_bucket", le=le)] for le in ("0.1", "1.0", "10.0")}
    assert buckets == {"0.1": 2, "1.0": 4, "10.0": 5}  # a value equal to a bound is in it
    assert samples[key("latency_seconds_bucket", le="+Inf")] == 7
    assert samples[key("latency_seconds_count")] == 7
    assert samples[key("latency_seconds_sum")] == pytest.approx(106.65)
    assert histogram.count() == 7
    assert histogram.total() == pytest.approx(106.65)


def test_histogram_buckets_never_decrease_in_the_output():
    registry = Registry()
    histogram = registry.histogram("s", "S.", LATENCY_BUCKETS, ("operation",))
    for i in range(200):
        histogram.observe(i / 13, operation="get")
    [family] = text_string_to_metric_families(registry.render())
    counts = [s.value for s in family.samples if s.name == "s_bucket"]
    assert counts == sorted(counts)
    assert counts[-1] == 200
    assert [s.labels["le"] for s in family.samples if s.name == "s_bucket"][-1] == "+Inf"


def test_a_nan_observation_lands_only_in_the_inf_bucket():
    registry = Registry()
    histogram = registry.histogram("h", "H.", [1])
    histogram.observe(math.nan)
    samples = parsed(registry.render())
    assert samples[key("h_bucket", le="1.0")] == 0
    assert samples[key("h_bucket", le="+Inf")] == 1


def test_a_trailing_inf_bound_is_accepted_and_not_repeated():
    registry = Registry()
    registry.histogram("h", "H.", [1, 2, math.inf])
    assert registry.render().count('le="+Inf"') == 1


@pytest.mark.parametrize(
    "buckets",
    [[], [math.inf], [2, 1], [1, 1], [1, math.nan], [-math.inf, 1]],
    ids=["empty", "only-inf", "descending", "repeated", "nan", "minus-inf"],
)
def test_bad_bucket_bounds_are_rejected(buckets):
    with pytest.raises(ValueError, match="bucket"):
        Histogram("h", "H.", buckets)


def test_unlabelled_metrics_show_zero_before_anything_is_recorded():
    registry = Registry()
    registry.counter("c_total", "C.")
    registry.gauge("g", "G.")
    registry.histogram("h", "H.", [1])
    samples = parsed(registry.render())
    assert samples[key("c_total")] == 0
    assert samples[key("g")] == 0
    assert samples[key("h_bucket", le="+Inf")] == 0
    assert samples[key("h_count")] == 0


def test_labelled_metrics_show_only_help_and_type_until_recorded():
    registry = Registry()
    registry.counter("c_total", "C.", ("site",))
    assert registry.render() == "# HELP c_total C.\n# TYPE c_total counter\n"


def test_an_empty_registry_renders_nothing():
    assert Registry().render() == ""


def test_output_is_sorted_and_the_same_whatever_the_recording_order():
    first, second = Registry(), Registry()
    a1, b1 = first.counter("b_total", "B.", ("x",)), first.counter("a_total", "A.", ("x",))
    b2, a2 = second.counter("a_total", "A.", ("x",)), second.counter("b_total", "B.", ("x",))
    for value in ("z", "m", "a"):
        a1.inc(x=value)
        b1.inc(x=value)
    for value in ("a", "m", "z"):
        b2.inc(x=value)
        a2.inc(x=value)
    text = first.render()
    assert text == second.render()
    assert text.index("a_total") < text.index("b_total")
    assert text.index('x="a"') < text.index('x="m"') < text.index('x="z"')


def test_label_values_are_strings_so_an_int_status_is_the_same_series():
    registry = Registry()
    counter = registry.counter("r_total", "R.", ("site", "status"))
    counter.inc(site="blog", status=200)
    counter.inc(site="blog", status="200")
    counter.inc(status=200, site="blog")
    assert parsed(registry.render()) == {key("r_total", site="blog", status="200"): 3}
    assert counter.value(site="blog", status="200") == 3


@pytest.mark.parametrize(
    "labels",
    [{}, {"site": "a"}, {"site": "a", "status": "1", "extra": "x"}, {"site": "a", "stat": "1"}],
    ids=["none", "missing", "extra", "misspelled"],
)
def test_wrong_label_names_are_rejected_everywhere(labels):
    registry = Registry()
    counter = registry.counter("c_total", "C.", ("site", "status"))
    gauge = registry.gauge("g", "G.", ("site", "status"))
    histogram = registry.histogram("h", "H.", [1], ("site", "status"))
    for record in (counter.inc, gauge.inc, gauge.dec, histogram.observe):
        with pytest.raises(ValueError, match="takes the labels"):
            record(1, **labels)
    with pytest.raises(ValueError, match="takes the labels"):
        gauge.set(1, **labels)
    assert registry.render().count("\n") == 6  # only HELP and TYPE: nothing was recorded


def test_an_unlabelled_metric_rejects_labels():
    with pytest.raises(ValueError, match="takes the labels"):
        Counter("c_total", "C.").inc(site="a")


def test_a_counter_cannot_go_down():
    counter = Counter("c_total", "C.")
    with pytest.raises(ValueError, match="cannot go down"):
        counter.inc(-1)
    assert counter.value() == 0


def test_a_gauge_goes_up_down_and_is_set():
    registry = Registry()
    gauge = registry.gauge("streams", "Open streams.", ("site",))
    gauge.inc(site="a")
    gauge.inc(5, site="a")
    gauge.dec(2, site="a")
    gauge.set(-1.5, site="b")
    gauge.set(math.inf, site="c")
    assert gauge.value(site="a") == 4
    assert gauge.value(site="never") == 0
    samples = parsed(registry.render())
    assert samples[key("streams", site="a")] == 4
    assert samples[key("streams", site="b")] == -1.5
    assert samples[key("streams", site="c")] == math.inf


def test_a_duplicate_name_is_rejected():
    registry = Registry()
    registry.counter("offload_requests_total", "Requests.")
    with pytest.raises(ValueError, match="clashes"):
        registry.gauge("offload_requests_total", "Again.")


@pytest.mark.parametrize("name", ["h_bucket", "h_sum", "h_count", "h"])
def test_a_name_a_histogram_renders_under_is_taken(name):
    registry = Registry()
    registry.histogram("h", "H.", [1])
    with pytest.raises(ValueError, match="clashes"):
        registry.counter(name, "Clash.")


def test_a_histogram_cannot_claim_names_already_taken():
    registry = Registry()
    registry.counter("h_count", "Taken.")
    with pytest.raises(ValueError, match="clashes"):
        registry.histogram("h", "H.", [1])
    assert "# TYPE h histogram" not in registry.render()


@pytest.mark.parametrize("name", ["", "1abc", "a-b", "a b", "a.b", "é", "a\n", "total{}"])
def test_invalid_metric_names_are_rejected(name):
    with pytest.raises(ValueError, match="invalid metric name"):
        Registry().counter(name, "Bad.")


@pytest.mark.parametrize("name", ["a", "_a", "a:b", ":a", "offload_requests_total", "A9"])
def test_valid_metric_names_are_accepted(name):
    registry = Registry()
    registry.counter(name, "Good.")
    assert parsed(registry.render())


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (["1a"], "invalid label name"),
        (["a-b"], "invalid label name"),
        (["a:b"], "invalid label name"),
        (["__name__"], "invalid label name"),
        ([""], "invalid label name"),
        (["site", "site"], "duplicate"),
        ("site", "not the string"),
    ],
)
def test_invalid_label_names_are_rejected(labels, message):
    with pytest.raises(ValueError, match=message):
        Counter("c_total", "C.", labels)


def test_le_is_reserved_on_a_histogram_only():
    with pytest.raises(ValueError, match="reserved"):
        Histogram("h", "H.", [1], ["le"])
    Counter("c_total", "C.", ["le"]).inc(le="x")


def test_float_values_render_as_prometheus_reads_them():
    registry = Registry()
    gauge = registry.gauge("g", "G.", ("k",))
    for label, value in {"tiny": 1e-9, "big": 1.5e20, "third": 1 / 3, "nan": math.nan}.items():
        gauge.set(value, k=label)
    samples = parsed(registry.render())
    assert samples[key("g", k="tiny")] == 1e-9
    assert samples[key("g", k="big")] == 1.5e20
    assert samples[key("g", k="third")] == 1 / 3
    assert math.isnan(samples[key("g", k="nan")])


# -- shared across processes (prometheus_client's multiprocess mode) ------------------


def _record_in_a_child(count: int) -> None:
    """A worker: its own shared registry, ``count`` requests, published, then gone."""
    registry = Registry(shared=True)
    m = origin_metrics(registry)
    for _ in range(count):
        m["requests"].inc(site="blog", status="200")
        m["storage"].observe(0.004, operation="head")
    m["bytes"].inc(100 * count, site="blog")
    registry.publish()


def _in_children(*counts: int) -> None:
    context = multiprocessing.get_context("fork")
    children = [context.Process(target=_record_in_a_child, args=(n,)) for n in counts]
    for child in children:
        child.start()
    for child in children:
        child.join(30)
        assert child.exitcode == 0


@pytest.fixture
def shared_dir(tmp_path, monkeypatch):
    folder = tmp_path / "metrics"
    folder.mkdir()
    monkeypatch.setenv(MULTIPROC_ENV, str(folder))
    return folder


def test_a_shared_registry_reports_the_totals_of_every_process(shared_dir):
    _in_children(3, 4)
    registry = Registry(shared=True)
    m = origin_metrics(registry)
    m["requests"].inc(site="blog", status="200")
    m["requests"].inc(site="shop", status="404")
    registry.publish()
    samples = parsed(registry.render())
    assert samples[key("offload_requests_total", site="blog", status="200")] == 8
    assert samples[key("offload_requests_total", site="shop", status="404")] == 1
    assert samples[key("offload_bytes_sent_total", site="blog")] == 700
    assert samples[key("offload_storage_seconds_count", operation="head")] == 7
    assert samples[key("offload_storage_seconds_bucket", operation="head", le="0.005")] == 7
    assert samples[key("offload_storage_seconds_bucket", operation="head", le="0.0025")] == 0
    assert samples[key("offload_storage_seconds_sum", operation="head")] == pytest.approx(0.028)
    assert {path.name.split("_")[0] for path in shared_dir.iterdir()} >= {"counter", "histogram"}


def test_a_shared_render_keeps_the_order_help_and_types_of_a_local_one(shared_dir):
    _in_children(2)
    registry = Registry(shared=True)
    origin_metrics(registry)["requests"].inc(site="a", status="200")
    registry.publish()
    text = registry.render()
    assert text.startswith(
        "# HELP offload_bytes_sent_total Body bytes sent.\n"
        "# TYPE offload_bytes_sent_total counter\n"
    )
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["offload_requests"].documentation == "Requests answered."
    assert families["offload_storage_seconds"].type == "histogram"
    assert text.index('offload_requests_total{site="a"') < text.index(
        'offload_requests_total{site="blog"'
    )


def test_a_shared_render_is_byte_for_byte_what_one_process_renders(shared_dir, monkeypatch):
    def record(registry: Registry) -> None:
        m = origin_metrics(registry)
        for _ in range(3):
            m["requests"].inc(site="blog", status="200")
            m["storage"].observe(0.004, operation="head")
        m["bytes"].inc(20480, site="blog")

    shared = Registry(shared=True)
    record(shared)
    shared.publish()
    monkeypatch.delenv(MULTIPROC_ENV)
    local = Registry()
    record(local)
    text = shared.render()
    assert 'offload_bytes_sent_total{site="blog"} 20480\n' in text
    assert text == local.render()


def test_counts_recorded_but_not_yet_published_are_not_in_a_shared_render(shared_dir):
    registry = Registry(shared=True)
    counter = registry.counter("c_total", "C.")
    counter.inc(5)
    registry.publish()
    counter.inc(2)
    assert parsed(registry.render()) == {key("c_total"): 5}
    registry.publish()
    assert parsed(registry.render()) == {key("c_total"): 7}


def test_a_per_process_gauge_is_this_process_own_and_other_gauges_are_summed(shared_dir):
    def child() -> None:
        registry = Registry(shared=True)
        registry.gauge("info", "Who answered.", ("pid",), per_process=True).set(1, pid="child")
        registry.gauge("streams", "Open streams.").set(3)
        registry.publish()
        os._exit(0)  # alive as far as the files say: its live gauge stays

    context = multiprocessing.get_context("fork")
    process = context.Process(target=child)
    process.start()
    process.join(30)
    registry = Registry(shared=True)
    registry.gauge("info", "Who answered.", ("pid",), per_process=True).set(1, pid="parent")
    registry.gauge("streams", "Open streams.").set(2)
    registry.publish()
    assert parsed(registry.render()) == {key("info", pid="parent"): 1, key("streams"): 5}
    multiprocess.mark_process_dead(process.pid, str(shared_dir))
    assert parsed(registry.render()) == {key("info", pid="parent"): 1, key("streams"): 2}


def test_a_shared_registry_needs_the_multiprocess_folder(tmp_path, monkeypatch):
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    with pytest.raises(ValueError, match=MULTIPROC_ENV):
        Registry(shared=True)
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="must name a folder"):
        Registry(shared=True)


def test_a_registry_is_local_unless_asked(shared_dir):
    registry = Registry()
    registry.counter("c_total", "C.").inc()
    registry.publish()
    assert not registry.shared
    assert list(shared_dir.iterdir()) == []


def test_what_collect_reads_is_what_a_shared_render_shows(shared_dir):
    _in_children(2)
    registry = Registry(shared=True)
    origin_metrics(registry)["hits"].inc(cache="meta")
    registry.publish()
    merged = registry.collect()
    assert registry.render(merged) == registry.render()
    assert (
        parsed(registry.render(merged))[key("offload_requests_total", site="blog", status="200")]
        == 2
    )


def test_a_local_registry_collects_nothing_from_files():
    registry = Registry()
    registry.counter("c_total", "C.").inc()
    assert registry.collect() == {}
    assert parsed(registry.render()) == {key("c_total"): 1}
