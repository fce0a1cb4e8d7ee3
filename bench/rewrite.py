"""How fast ``Rewriter.rewrite`` turns a 1 MB post's upload URLs into CDN URLs, beside str.replace.

    python bench/rewrite.py [--attachments 100] [--size 1000000] [--repeat 5]

The post is generated (fixed seed) as WordPress 6 writes it: paragraphs and
headings around image blocks with ``src``, a five-candidate ``srcset`` and
``sizes``, linked originals, a cover block with a CSS ``url()``, a gallery's
escaped JSON in an inline script, ``//host`` URLs and a few files that are
not offloaded. ``--attachments`` attachments of five sizes each make the URL
list (500 by default), mapped to versioned keys. The baseline calls
``str.replace`` once per URL of that list, with no lookup, no decoding and no
care for where a URL ends; it misses the escaped and ``//`` forms and breaks
``photo.jpg.webp`` (shown at the end). Each side runs ``--repeat`` times after
one warm-up run; the best time counts.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable

from offload.config.settings import Site
from offload.media.rewrite import Rewriter

UPLOADS = "https://example.com/wp-content/uploads"
CDN = "https://cdn.example.com"
SIZES = ["", "-300x200", "-768x512", "-1024x683", "-1536x1024"]
WORDS = [
    "the",
    "light",
    "over",
    "harbour",
    "was",
    "thin",
    "and",
    "grey",
    "when",
    "we",
    "set",
    "out",
    "along",
    "old",
    "coast",
    "road",
    "past",
    "lighthouse",
    "fish",
    "market",
    "towards",
    "cliffs",
    "where",
    "gulls",
    "wheeled",
    "above",
    "boats",
    "nobody",
    "seemed",
    "in",
    "any",
    "hurry",
    "at",
    "all",
]

SITE = Site(
    name="blog",
    storage="file:///srv/media",
    prefix="wp-content/uploads",
    uploads_url=UPLOADS,
    cdn_url=CDN,
    versioning=True,
)


def paragraph(rng: random.Random) -> str:
    sentences = [
        " ".join(rng.choice(WORDS) for _ in range(rng.randrange(8, 20))).capitalize() + "."
        for _ in range(rng.randrange(3, 7))
    ]
    return f"<!-- wp:paragraph -->\n<p>{' '.join(sentences)}</p>\n<!-- /wp:paragraph -->\n\n"


def image_block(ident: int, path: str, rng: random.Random) -> str:
    stem, ext = path.rsplit(".", 1)
    url = f"{UPLOADS}/{stem}-1024x683.{ext}"
    srcset = ", ".join(
        f"{UPLOADS}/{stem}{size}.{ext} {width}w"
        for size, width in zip(SIZES, [2048, 300, 768, 1024, 1536], strict=True)
    )
    alt = " ".join(rng.choice(WORDS) for _ in range(5))
    return (
        f'<!-- wp:image {{"id":{ident},"sizeSlug":"large","linkDestination":"media"}} -->\n'
        f'<figure class="wp-block-image size-large"><a href="{UPLOADS}/{path}">'
        f'<img decoding="async" loading="lazy" width="1024" height="683" src="{url}" '
        f'alt="{alt}" class="wp-image-{ident}" srcset="{srcset}" '
        'sizes="(max-width: 1024px) 100vw, 1024px" /></a>'
        f'<figcaption class="wp-element-caption">{alt.capitalize()}</figcaption></figure>\n'
        "<!-- /wp:image -->\n\n"
    )


def cover_block(path: str) -> str:
    stem, ext = path.rsplit(".", 1)
    return (
        '<div class="wp-block-cover" style="min-height:430px;background-image:url('
        f'\'{UPLOADS}/{stem}-1536x1024.{ext}\')"><span aria-hidden="true" '
        'class="wp-block-cover__background has-background-dim"></span></div>\n\n'
    )


def gallery_script(paths: list[str]) -> str:
    items = ",".join(
        '{"src":"' + f"{UPLOADS}/{p.replace('.', '-300x200.', 1)}".replace("/", "\\/") + '"}'
        for p in paths
    )
    return f'<script type="application/json" class="gallery-data">[{items}]</script>\n\n'


def make_post(attachments: int, size: int, seed: int = 5) -> tuple[str, dict[str, str]]:
    """The post and the lookup table (path under uploads -> versioned key) of its files."""
    rng = random.Random(seed)
    table: dict[str, str] = {}
    originals = []
    for index in range(attachments):
        path = f"20{18 + index % 7}/{1 + index % 12:02d}/photo-{index:04d}.jpg"
        version = f"{rng.getrandbits(32):08x}"
        folder, name = path.rsplit("/", 1)
        stem, ext = name.rsplit(".", 1)
        for suffix in SIZES:
            table[f"{folder}/{stem}{suffix}.{ext}"] = (
                f"wp-content/uploads/{folder}/{version}/{stem}{suffix}.{ext}"
            )
        originals.append(path)
    blocks = [image_block(1000 + i, p, rng) for i, p in enumerate(originals)]
    blocks += [cover_block(p) for p in originals[:5]]
    blocks.append(gallery_script(originals[5:15]))
    blocks.append(f'<p><img src="//example.com/wp-content/uploads/{originals[15]}" /></p>\n')
    blocks += [image_block(9000 + i, f"2017/01/legacy-{i}.jpg", rng) for i in range(5)]
    blocks.append('<p><a href="https://example.com/wp-content/uploads-old/a.jpg">old</a></p>\n')
    post = ""
    for block in blocks:
        post += paragraph(rng) + block
    while len(post) < size:
        post += paragraph(rng)
    return post, table


def best_of(repeat: int, run: Callable[[], object]) -> float:
    run()  # warm-up: regex compilation, caches
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def replace_all(text: str, pairs: list[tuple[str, str]]) -> str:
    for old, new in pairs:
        text = text.replace(old, new)
    return text


def show_where_replace_is_wrong(table: dict[str, str]) -> None:
    rewriter = Rewriter(SITE, table.get)
    path, key = next(iter(table.items()))
    text = f'<source srcset="{UPLOADS}/{path}.webp" type="image/webp"><img src="{UPLOADS}/{path}">'
    print("\nwhere str.replace is wrong (photo.jpg is offloaded, photo.jpg.webp is not):")
    print(f"  input:       {text}")
    print(f"  str.replace: {text.replace(f'{UPLOADS}/{path}', f'{CDN}/{key}')}")
    print(f"  offload:     {rewriter.rewrite(text)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attachments", type=int, default=100)
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    post, table = make_post(args.attachments, args.size)
    pairs = [(f"{UPLOADS}/{path}", f"{CDN}/{key}") for path, key in table.items()]
    rewriter = Rewriter(SITE, table.get)
    megabytes = len(post.encode()) / 1e6
    ours_out, theirs_out = rewriter.rewrite(post), replace_all(post, pairs)
    print(
        f"post: {megabytes:.2f} MB, {post.count('wp-content/uploads')} upload URLs, "
        f"{len(pairs)} offloaded files"
    )
    print(
        f"CDN URLs written: offload {ours_out.count('cdn.example.com')}, "
        f"str.replace {theirs_out.count('cdn.example.com')}"
    )
    ours = best_of(args.repeat, lambda: rewriter.rewrite(post))
    theirs = best_of(args.repeat, lambda: replace_all(post, pairs))
    print(f"offload Rewriter.rewrite: {ours * 1e3:7.1f} ms, {megabytes / ours:7.1f} MB/s")
    print(f"str.replace x {len(pairs)}:     {theirs * 1e3:7.1f} ms, {megabytes / theirs:7.1f} MB/s")
    print(f"ratio: offload runs at {theirs / ours:.2f}x the baseline's speed (target >= 0.5x)")
    show_where_replace_is_wrong(table)


if __name__ == "__main__":
    main()
