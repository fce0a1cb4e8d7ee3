"""The plugin in a real WordPress while offload is away: nothing is lost, nothing waits long.

offload stopped (connections refused), hung (a server that accepts and never
answers) and back again. Uploads and deletions made meanwhile wait in the
plugin's retry queue, which WP-Cron (``GET /wp-cron.php``) works through; an
administrator sees a notice and the queue under Media -> Offload, whose
"Offload remaining media" button offloads what was in the library before the
plugin. Time is not waited for: ``a_minute_passes`` moves the queue's and
WP-Cron's times back. The stack is tests/wordpress_stack.py's.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator

import pytest

from tests.wordpress_server import WordPress
from tests.wordpress_stack import (
    Stack,
    a_minute_passes,
    assert_served_from_cdn,
    attachment_files,
    describe,
    draw,
    hung_server,
    local_bucket,
    log_in,
    queue,
    run_cron,
    running_stack,
    sideload,
    srcset_urls,
    upload_through_rest,
)

pytestmark = pytest.mark.wordpress

#: Seconds one page request may wait on offload, kept short so a hung offload costs little.
BUDGET = "3"


@pytest.fixture(scope="module")
def stack(real_wordpress: WordPress, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("offload-outage")
    constants = {"OFFLOAD_REQUEST_BUDGET": BUDGET}
    with running_stack(real_wordpress, folder, local_bucket(folder), constants=constants) as s:
        yield s


@pytest.fixture
def empty_queue(stack: Stack) -> Iterator[None]:
    """Each test starts and ends with offload up and nothing queued."""
    assert queue(stack.wordpress) == []
    yield
    if stack.offload.process is None:
        stack.offload.start()
    stack.wordpress.php('global $wpdb; $wpdb->query( "DELETE FROM {$wpdb->prefix}offload_queue" );')


@contextlib.contextmanager
def offload_down(stack: Stack) -> Iterator[None]:
    stack.offload.stop()
    try:
        yield
    finally:
        if stack.offload.process is None:
            stack.offload.start()


def urls_of(described: dict) -> list[str]:
    return [described["url"], *described["src"].values(), *srcset_urls(described["image"])]


def local_only(stack: Stack, urls: list[str]) -> bool:
    return all(url.startswith(stack.wordpress.url + "/") for url in urls)


@pytest.mark.usefixtures("empty_queue")
def test_an_upload_while_offload_is_down_waits_in_the_queue_and_goes_when_it_is_back(stack):
    wp = stack.wordpress
    admin = log_in(wp)
    with offload_down(stack):
        attachment = sideload(stack, "while-down.jpg", 1200, 800)
        waiting = queue(wp)
        assert [(row["hook"], int(row["attachment_id"]), row["state"]) for row in waiting] == [
            ("uploads", attachment, "waiting")
        ]
        assert local_only(stack, urls_of(describe(wp, attachment)))
        assert "offload-queue-notice" in admin.get("/wp-admin/index.php")
        page = admin.get("/wp-admin/upload.php?page=offload")
        assert 'id="offload-reachable" data-ok="0"' in page
        assert 'data-count="waiting">1<' in page

    a_minute_passes(wp)
    run_cron(wp)

    assert queue(wp) == []
    described = describe(wp, attachment)
    assert_served_from_cdn(stack, urls_of(described))
    for path in attachment_files(described["meta"]):
        assert stack.object_file(path).read_bytes() == (wp.uploads_dir / path).read_bytes()
    assert "offload-queue-notice" not in admin.get("/wp-admin/index.php")


@pytest.mark.usefixtures("empty_queue")
def test_a_hung_offload_costs_an_upload_one_request_and_the_rest_is_queued(stack, tmp_path):
    wp = stack.wordpress
    photo = tmp_path / "hung.jpg"
    draw(wp, photo, 3000, 2000)  # seven sizes: seven metadata saves
    endpoint = wp.constants["OFFLOAD_ENDPOINT"]
    with hung_server() as (url, accepted):
        wp.constants["OFFLOAD_ENDPOINT"] = url
        wp.write_config()
        try:
            attachment = upload_through_rest(stack, photo)
        finally:
            wp.constants["OFFLOAD_ENDPOINT"] = endpoint
            wp.write_config()
        assert len(accepted) == 1  # one wait, within the budget; nothing more was sent
    assert [(row["hook"], int(row["attachment_id"])) for row in queue(wp)] == [
        ("uploads", attachment)
    ]
    assert any("queued for retry" in line for line in wp.plugin_log())

    a_minute_passes(wp)
    run_cron(wp)
    assert queue(wp) == []
    assert_served_from_cdn(stack, urls_of(describe(wp, attachment)))


@pytest.mark.usefixtures("empty_queue")
def test_a_deletion_while_offload_is_down_empties_the_bucket_within_one_cron_run(stack):
    wp = stack.wordpress
    attachment = sideload(stack, "private.jpg", 800, 600)
    described = describe(wp, attachment)
    files = attachment_files(described["meta"])
    assert all(stack.object_file(path).exists() for path in files)

    with offload_down(stack):
        wp.php(f"$out['deleted'] = (bool) wp_delete_attachment( {attachment}, true );")
        assert [(row["hook"], int(row["attachment_id"])) for row in queue(wp)] == [
            ("deletions", attachment)
        ]
        assert all(stack.object_file(path).exists() for path in files)  # offload never heard

    a_minute_passes(wp)
    run_cron(wp)

    assert queue(wp) == []
    assert [path for path in files if stack.object_file(path).exists()] == []


@pytest.mark.usefixtures("empty_queue")
def test_media_offload_offloads_the_existing_library_in_batches_through_wp_cron(stack):
    wp = stack.wordpress
    plugin = wp.root / "wp-content" / "mu-plugins" / "offload.php"
    aside = wp.root.parent / "offload.php.aside"
    shutil.move(plugin, aside)  # the library grew before the plugin was installed
    try:
        existing = [sideload(stack, f"older-{n}.jpg", 640, 480) for n in range(3)]
    finally:
        shutil.move(aside, plugin)
    assert all(local_only(stack, urls_of(describe(wp, a))) for a in existing)

    admin = log_in(wp)
    page = admin.get("/wp-admin/upload.php?page=offload")
    assert 'id="offload-reachable" data-ok="1"' in page
    assert 'data-count="remaining">3<' in page
    started = admin.submit("/wp-admin/upload.php?page=offload", "offload_batch")
    assert "Offloading existing media: 0 of 3 done" in started

    run_cron(wp)

    page = admin.get("/wp-admin/upload.php?page=offload")
    assert "The last run offloaded 3 of 3 attachments (0 failed)" in page
    assert 'data-count="remaining">0<' in page
    for attachment in existing:
        assert_served_from_cdn(stack, urls_of(describe(wp, attachment)))


@pytest.mark.usefixtures("empty_queue")
def test_a_deletion_while_the_secret_is_missing_waits_for_it_and_then_empties_the_bucket(stack):
    wp = stack.wordpress
    attachment = sideload(stack, "deleted-unsigned.jpg", 800, 600)
    files = attachment_files(describe(wp, attachment)["meta"])
    assert all(stack.object_file(path).exists() for path in files)

    secret = wp.constants.pop("OFFLOAD_WEBHOOK_SECRET")
    wp.write_config()  # a deploy that lost the constant for a while
    try:
        wp.php(f"$out['deleted'] = (bool) wp_delete_attachment( {attachment}, true );")
        waiting = queue(wp)
        assert [(row["hook"], int(row["attachment_id"])) for row in waiting] == [
            ("deletions", attachment)
        ]
        assert "OFFLOAD_WEBHOOK_SECRET" in waiting[0]["last_error"]
        assert all(stack.object_file(path).exists() for path in files)
    finally:
        wp.constants["OFFLOAD_WEBHOOK_SECRET"] = secret
        wp.write_config()

    a_minute_passes(wp)
    run_cron(wp)

    assert queue(wp) == []
    assert [path for path in files if stack.object_file(path).exists()] == []
