"""What the plugin's content filter costs a page holding 200 media URLs, in a real WordPress.

Starts the real-WordPress stack of the tests (Debian's WordPress on MariaDB,
``php -S``, the plugin ``offload render wordpress-plugin`` prints, and
``offload serve``), records 200 offloaded files the way offload's answers do
(``offload_store_paths``, one row per file in the ``offload_urls`` table), then
times ``apply_filters('the_content', ...)`` on a post of 200 image blocks, each
naming its file twice (the image and its link), in the same PHP process: once
to warm WordPress's own filters, then without the plugin's filter, then with it
(the request's first call: its one lookup query and its regex), then with it
again (the lookups are kept for the request). Each number is the median of
``--repeat`` runs, each a fresh PHP process.

    python bench/wordpress_content.py [--urls 200] [--repeat 50]

Needs the packages .ci/run installs (wordpress, php-mysql, php-gd, mariadb-server).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.wordpress_server import running_mariadb, running_wordpress
from tests.wordpress_stack import local_bucket, running_stack

TIMING = """
$base = wp_get_upload_dir()['baseurl'];
$paths = array();
$html = '';
for ( $i = 0; $i < {urls}; $i++ ) {{
	$path = sprintf( '2026/12/photo-%03d-1024x683.jpg', $i );
	$paths[ $path ] = 'https://cdn.example.com/wp-content/uploads/' . $path;
	$url = $base . '/' . $path;
	$html .= '<!-- wp:image {{"sizeSlug":"large","linkDestination":"media"}} -->' . "\\n"
		. '<figure class="wp-block-image size-large"><a href="' . $url . '">'
		. '<img src="' . $url . '" alt=""/></a></figure>' . "\\n"
		. '<!-- /wp:image -->' . "\\n";
}}
offload_store_paths( 1, $paths );
$post = wp_insert_post(
	array( 'post_title' => 'bench', 'post_status' => 'publish', 'post_content' => $html )
);
$content = get_post( $post )->post_content;
$time = function () use ( $content ) {{
	$start = hrtime( true );
	$rendered = apply_filters( 'the_content', $content );
	return array( ( hrtime( true ) - $start ) / 1e6, $rendered );
}};
remove_filter( 'the_content', 'offload_rewrite', 20 );
$time(); // WordPress's own filters warm their caches first
list( $without ) = $time();
add_filter( 'the_content', 'offload_rewrite', 20 );
list( $first, $with ) = $time(); // the request's first lookup: one query
list( $second ) = $time(); // the lookups are kept for the request
$out = array(
	'first' => $first,
	'second' => $second,
	'without' => $without,
	'rewritten' => substr_count( $with, 'https://cdn.example.com/' ),
);
wp_delete_post( $post, true );
"""


def median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--urls", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "mariadb").mkdir()
        (root / "offload").mkdir()
        with (
            running_mariadb(root / "mariadb") as database,
            running_wordpress(root, database) as wp,
            running_stack(wp, root / "offload", local_bucket(root / "offload")),
        ):
            runs = [wp.php(TIMING.format(urls=args.urls)) for _ in range(args.repeat)]
    assert all(run["rewritten"] == 2 * args.urls for run in runs), runs[0]
    first = median([run["first"] for run in runs])
    second = median([run["second"] for run in runs])
    without = median([run["without"] for run in runs])
    print(f"the_content of a post with {args.urls} media URLs ({args.repeat} runs, median):")
    print(f"  without the plugin's filter   {without:7.2f} ms")
    print(f"  with it, first call           {first:7.2f} ms  (+{first - without:.2f} ms)")
    print(f"  with it, again                {second:7.2f} ms  (+{second - without:.2f} ms)")


if __name__ == "__main__":
    main()
