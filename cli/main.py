"""The dqcodec command line: thin click commands over the library.

Each command imports what it needs when it runs: ``dqcodec --help`` and ``dqcodec models`` load
neither torch nor compressai (``tests/test_cli.py`` checks it), and coding a file loads torch only.
"""

from __future__ import annotations

import io
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import click

import dqcodec  # its errors only: compress, decompress and inspect are loaded on first use
from dqcodec import defaults, evaluate, evaluate_lossless, zoo  # light: they load torch when they code
from dqcodec.point import Ladder

# The libraries dqcodec runs on, whose warnings (Pillow's on a damaged EXIF block, torch's and compressai's
# deprecations) are about their own code, not the user's files: the command line does not pass them on.
DEPENDENCIES = ("PIL", "torch", "torchvision", "compressai", "constriction", "numpy", "pillow_jxl")


def quiet_dependencies() -> None:
    for module in DEPENDENCIES:
        warnings.filterwarnings("ignore", module=rf"{module}(\.|$)")


# Errors a user can cause with bad input (dqcodec's own, and the file system's); anything else is a
# bug and keeps its traceback.
USER_ERRORS = (dqcodec.DQCodecError, OSError)

# what `decode -o NAME.SUFFIX` writes: lossless formats only, so a decoded image is kept as decoded
DECODED_FORMATS = {
    ".png": ("PNG", {}),
    ".bmp": ("BMP", {}),
    ".ppm": ("PPM", {}),
    ".pgm": ("PPM", {}),
    ".pnm": ("PPM", {}),
    ".tif": ("TIFF", {}),
    ".tiff": ("TIFF", {}),
    ".webp": ("WEBP", {"lossless": True, "quality": 100}),
}

max_pixels_option = click.option(
    "--max-pixels",
    type=click.IntRange(min=0),
    default=defaults.DEFAULT_MAX_PIXELS,
    show_default=True,
    help="refuse images (and files whose header names images) with more pixels; 0 for no limit",
)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: Path, data: bytes) -> None:
    """Write through a temporary file in the same folder, then rename over the target. The file gets
    the permissions the umask gives a new file, as open() would."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~_umask())
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def plan_outputs(inputs: tuple[Path, ...], output: Path | None, suffix: str, force: bool) -> list[tuple[Path, Path]]:
    """Pair every input with its output path; refuse to overwrite without --force."""
    if len(inputs) > 1 or (output is not None and output.is_dir()):
        folder = output
        if folder is not None:
            if folder.exists() and not folder.is_dir():
                raise click.UsageError(f"-o {folder} must be a folder when there are several inputs")
            folder.mkdir(parents=True, exist_ok=True)
        pairs = [(src, (folder or src.parent) / (src.stem + suffix)) for src in inputs]
    else:
        pairs = [(inputs[0], output or inputs[0].with_suffix(suffix))]
    targets = [dst for _, dst in pairs]
    if len(set(targets)) != len(targets):
        raise click.UsageError("two inputs would write the same output file; give them distinct names")
    existing = [
        str(dst) for dst in targets if os.path.lexists(dst)
    ]  # a symlink, even dangling, is not replaced silently
    if existing and not force:
        raise click.ClickException(
            f"{existing[0]} exists; use --force to overwrite"
            + (f" (and {len(existing) - 1} more)" if len(existing) > 1 else "")
        )
    return pairs


class FileProgress:
    """A progress bar on stderr for one long file, drawn only on a terminal: the ``progress`` callback
    of ``dqcodec.compress`` and ``decompress``. The bar starts when the work reports its total."""

    def __init__(self, label: str):
        self.label, self.bar = label, None
        self.shown = sys.stderr.isatty()

    def __call__(self, done: int, total: int) -> None:
        if not self.shown:
            return
        if self.bar is None:
            self.bar = click.progressbar(length=total, label=self.label, file=sys.stderr)
            self.bar.__enter__()
        self.bar.update(done - self.bar.pos)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


def run_batch(pairs, label, work) -> None:
    """Run work(src, dst) -> message over the pairs, with a progress bar for several;
    report failures one line each and exit non-zero if any."""
    failures = []

    def one(src, dst, progress=None):
        try:
            return work(src, dst, progress), None
        except USER_ERRORS as error:
            return None, f"{src}: {error}"
        finally:
            if progress is not None:
                progress.close()

    if len(pairs) == 1:  # one file: its own progress bar, on a terminal (several: a bar over the files)
        message, failure = one(*pairs[0], FileProgress(f"{label} {pairs[0][0].name}"))
        if failure:
            raise click.ClickException(failure)
        click.echo(message)
        return
    with click.progressbar(pairs, label=label, file=sys.stderr) as bar:
        for src, dst in bar:
            message, failure = one(src, dst)
            if failure:
                failures.append(failure)
            else:
                click.echo(message)
    for failure in failures:
        click.echo(f"error: {failure}", err=True)
    if failures:
        raise click.ClickException(f"{len(failures)} of {len(pairs)} files failed")


@click.group()
@click.version_option(package_name="dqcodec")
def cli():
    """dqcodec: a learned image codec built on depthwise quantization."""
    quiet_dependencies()


@cli.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), help="output .dq file, or a folder for several inputs")
@click.option(
    "-q",
    "--quality",
    type=int,
    help="1 = smallest file; a model's qualities are lossy ones and residual ones (a lossy quality's codes and quantized DCTs of what they miss), then near-lossless ones (see `dqcodec models`); default: the model's default",
)
@click.option("--lossless", is_flag=True, help="code every pixel exactly (-q then picks the codes the file carries)")
@click.option(
    "-e",
    "--effort",
    type=click.IntRange(0, len(defaults.EFFORT_STEPS) - 1),
    default=0,
    show_default=True,
    help="encoder effort (lossy and residual qualities): 1 and 2 search for better codes, a smaller file for the same image quality in several times the time; decoding is unchanged",
)
@click.option(
    "--model", help=f"default: {defaults.DEFAULT_MODEL}, or {defaults.DEFAULT_LOSSLESS_MODEL} with --lossless"
)
@click.option(
    "--bpp",
    type=click.FloatRange(min=0, min_open=True),
    help="instead of -q: the largest quality whose file is within this many bits per pixel (as cwebp -size)",
)
@click.option(
    "--psnr",
    type=click.FloatRange(min=0, min_open=True),
    help="instead of -q: the smallest quality whose decoded image reaches this PSNR in dB (as cwebp -psnr)",
)
@click.option(
    "--pair",
    is_flag=True,
    help="two views of one scene (stereo, burst) into one file: a common stream and a local stream per view",
)
@max_pixels_option
@click.option("--force", is_flag=True, help="overwrite existing outputs")
def encode(inputs, output, quality, lossless, effort, model, bpp, psnr, pair, max_pixels, force):
    """Encode images (PNG, JPEG, ...) into .dq files."""
    if pair:
        _encode_pair(inputs, output, quality, lossless, effort, model, bpp, psnr, max_pixels, force)
        return
    if lossless and effort:
        raise click.UsageError("--effort applies to lossy files only")
    if (bpp is not None or psnr is not None) and (
        quality is not None or lossless or (bpp is not None and psnr is not None)
    ):
        raise click.UsageError("give one of -q, --lossless, --bpp and --psnr")
    pairs = plan_outputs(inputs, output, ".dq", force)
    from dqcodec import codec, rate_control

    def work(src, dst, progress=None):
        started = time.perf_counter()
        chosen = ""
        if bpp is not None or psnr is not None:
            coded = rate_control.compress_to(src, bpp, psnr, model, effort, max_pixels or None)
            data, chosen = coded.data, f", quality {coded.quality}" + (f", {coded.psnr:.2f} dB" if psnr else "")
        else:
            data = dqcodec.compress(
                src,
                quality=quality,
                model=model,
                lossless=lossless,
                effort=effort,
                max_pixels=max_pixels or None,
                progress=progress,
            )
        write_atomic(dst, data)
        info = codec.container.unpack(data)[0]
        bpp_file = 8 * len(data) / (info.height * info.width)
        bpd = bpp_file / codec.channels(info.mode)
        seconds = time.perf_counter() - started
        return f"{src} -> {dst}: {len(data)} bytes, {bpp_file:.4f} bpp ({bpd:.4f} bits/dim){chosen}, {seconds:.2f} s"

    run_batch(pairs, "encoding", work)


def _encode_pair(inputs, output, quality, lossless, effort, model, bpp, psnr, max_pixels, force) -> None:
    if len(inputs) != 2:
        raise click.UsageError(f"--pair takes two images (the views), got {len(inputs)}")
    if lossless or effort or bpp is not None or psnr is not None:
        raise click.UsageError("--pair takes -q and --model; lossless pairs are -q of a lossless quality")
    if output is not None and output.is_dir():
        raise click.UsageError(f"-o {output} is a folder; a pair is one file")
    dst = output or inputs[0].with_suffix(".dq")
    if os.path.lexists(dst) and not force:
        raise click.ClickException(f"{dst} exists; use --force to overwrite")
    from dqcodec import pairs

    started = time.perf_counter()
    try:
        data = pairs.compress_pair(*inputs, quality=quality, model=model, max_pixels=max_pixels or None)
    except USER_ERRORS as error:
        raise click.ClickException(f"{inputs[0]}, {inputs[1]}: {error}") from None
    write_atomic(dst, data)
    streams = ", ".join(f"{name} {n}" for name, n in pairs.unpack(data).stream_bytes.items())
    click.echo(
        f"{inputs[0]} + {inputs[1]} -> {dst}: {len(data)} bytes ({streams}), {time.perf_counter() - started:.2f} s"
    )


def view_path(dst: Path, view: int) -> Path:
    """Where view N of a pair file decoded to ``dst`` goes: NAME.N.SUFFIX."""
    return dst.with_name(f"{dst.stem}.{view}{dst.suffix}")


def _encoded_image(image, dst: Path) -> bytes:
    encoded = io.BytesIO()
    image_format, options = DECODED_FORMATS[dst.suffix.lower()]
    image.save(encoded, format=image_format, **options)
    return encoded.getvalue()


@cli.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), help="output PNG, or a folder for several inputs")
@click.option(
    "--preview",
    is_flag=True,
    help="for lossless files: the lossy image from the codes alone, without decoding the pixels",
)
@click.option(
    "--view",
    type=click.IntRange(0, 1),
    help="pair files: decode this view alone (0 reads the common stream, 1 also its local stream)",
)
@max_pixels_option
@click.option("--force", is_flag=True, help="overwrite existing outputs")
def decode(inputs, output, preview, view, max_pixels, force):
    """Decode .dq files into PNG images (or the lossless format -o names: .png, .bmp, .ppm, .tif, .webp).

    A pair file writes NAME.0.png and NAME.1.png (its two views), or with --view N that view as NAME.png."""
    pairs = plan_outputs(inputs, output, ".png", force)
    for _, dst in pairs:
        if dst.suffix.lower() not in DECODED_FORMATS:
            raise click.UsageError(
                f"{dst}: cannot write {dst.suffix or 'a file without a suffix'}; decode writes {', '.join(sorted(DECODED_FORMATS))} (lossless formats)"
            )

    from dqcodec.pairs import is_pair

    def work(src, dst, progress=None):
        started = time.perf_counter()
        data = src.read_bytes()
        if is_pair(data):
            if preview:
                raise dqcodec.ArgumentError("--preview applies to lossless single-image files, not to pair files")
            return decode_pair(data, src, dst, view, max_pixels, force, started)
        if view is not None:
            raise dqcodec.ArgumentError("--view applies to pair files; this is a single-image .dq file")
        image = dqcodec.decompress(data, preview=preview, max_pixels=max_pixels or None, progress=progress)
        write_atomic(dst, _encoded_image(image, dst))
        return f"{src} -> {dst}: {image.width}x{image.height} {image.mode}, {time.perf_counter() - started:.2f} s"

    run_batch(pairs, "decoding", work)


def decode_pair(data: bytes, src: Path, dst: Path, view, max_pixels, force: bool, started: float) -> str:
    """Decode a pair file's views (or one of them) next to ``dst``; existing outputs need --force."""
    from dqcodec import pairs

    views = (0, 1) if view is None else (view,)
    targets = [view_path(dst, v) for v in views] if view is None else [dst]
    existing = [t for t in targets if os.path.lexists(t) and t != dst]  # dst itself was checked by plan_outputs
    if existing and not force:
        raise FileExistsError(f"{existing[0]} exists; use --force to overwrite")
    images = pairs.decompress_pair(data, views, max_pixels=max_pixels or None)
    for image, target in zip(images, targets, strict=True):
        write_atomic(target, _encoded_image(image, target))
    written = ", ".join(f"{t} ({i.width}x{i.height} {i.mode})" for t, i in zip(targets, images, strict=True))
    return f"{src} -> {written}, {time.perf_counter() - started:.2f} s"


def _pair_info(file: Path, data: bytes, max_pixels) -> None:
    from dqcodec import pairs

    details = pairs.inspect_pair(data, max_pixels=max_pixels or None)
    common, second = details.common, details.second
    click.echo(f"file            {file}")
    click.echo(f"pair            two views; view 1 coded {details.coding.name.lower()}")
    click.echo(f"model           {common.model} (weights {common.weights_hash.hex()}), quality {common.quality}")
    click.echo(f"view 0          {common.width}x{common.height} {common.mode}")
    click.echo(f"view 1          {second.width}x{second.height} {second.mode}")
    pixels = common.width * common.height + second.width * second.height
    click.echo(f"size            {details.file_bytes} bytes, {8 * details.file_bytes / pixels:.4f} bpp over both views")
    click.echo(f"streams         {', '.join(f'{name} {n} bytes' for name, n in details.stream_bytes.items())}")


@cli.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@max_pixels_option
def info(file, max_pixels):
    """Show a .dq file's header, its bits per pixel and its payload against the ideal (a pair file: its streams)."""
    from dqcodec import pairs

    data = file.read_bytes()
    if pairs.is_pair(data):
        try:
            _pair_info(file, data, max_pixels)
        except USER_ERRORS as error:
            raise click.ClickException(f"{file}: {error}") from None
        return
    try:
        details = dqcodec.inspect(data, max_pixels=max_pixels or None)
    except USER_ERRORS as error:
        raise click.ClickException(f"{file}: {error}") from None
    h = details.header
    overhead = (
        100 * (details.payload_bits / details.ideal_payload_bits - 1) if details.ideal_payload_bits else float("nan")
    )
    click.echo(f"file            {file}")
    click.echo(f"model           {h.model} (weights {h.weights_hash.hex()})")
    click.echo(f"coding          {details.coding}, quality {h.quality}")
    groups = "+".join(map(str, details.point.groups))
    click.echo(f"codes           quality {details.point.codes_quality}'s (groups of each level: {groups})")
    click.echo(f"image           {h.width}x{h.height} {h.mode}")
    click.echo(
        f"size            {details.file_bytes} bytes, {details.bits_per_pixel:.4f} bpp, {details.bits_per_dimension:.4f} bits/dim"
    )
    click.echo(f"streams         {', '.join(f'{name} {n} bytes' for name, n in details.streams.items())}")
    click.echo(
        f"payload         {details.payload_bits} bits actual, {details.ideal_payload_bits:.1f} bits ideal (-sum log2 p), {overhead:+.3f}%"
    )


@cli.command()
def models():
    """List the shipped models with their rates and sizes."""
    installed = zoo.available()
    if not installed:
        raise click.ClickException(f"no models installed in {zoo.models_dir()}")
    for model_file in installed:
        click.echo(f"{model_file.name}  ({model_file.path.name}, {model_file.size / 1e6:.2f} MB)")
        card = model_file.path.parent / f"{model_file.name}.json"
        if card.exists():
            details = json.loads(card.read_text())
            ladder = Ladder.from_config(details.get("config", {}))
            for row in details["heldout"]:
                label = f"quality {row['quality']}: " if "quality" in row else ""  # a baseline has one rate
                if 0 < row.get("quality", 0) <= len(ladder) and not ladder.is_lossy(row["quality"]):
                    label = f"quality {row['quality']} ({ladder.rung(row['quality']).describe()}): "
                click.echo(f"  {label}{row['bpp']:.3f} bpp, {row['psnr']:.2f} dB PSNR (held-out photos)")
            if "lossless" in details:
                click.echo(f"  lossless: {details['lossless']['heldout']['dq']:.3f} bits/dim (held-out photos)")


def _eval_pairs(folder: Path, codecs, output: Path, metric: str, model: str, force: bool) -> None:
    from dqcodec import evaluate, evaluate_pairs

    if metric != "psnr":
        raise click.UsageError("--pairs measures PSNR (the mean of the two views')")
    earlier = evaluate_pairs.previous_results(output)
    if earlier and not force:
        raise click.ClickException(
            f"{output} holds the results of an earlier run ({earlier[0].name}, ...); use --force"
        )
    if not evaluate_pairs.find_pairs(folder):
        raise click.ClickException(f"no pairs in {folder}: a pair is a folder holding exactly two images")
    chosen = tuple(c for c in codecs if c in ("dq", *evaluate_pairs.BASELINES))
    if codecs == evaluate.DEFAULT_CODECS:
        chosen = ("dq", *evaluate_pairs.BASELINES)

    def bar(jobs):
        with click.progressbar(jobs, label="evaluating pairs", file=sys.stderr) as items:
            yield from items

    try:
        points, skipped = evaluate_pairs.run(folder, model, chosen, bar)
    except USER_ERRORS as error:
        raise click.ClickException(str(error)) from None
    summary = evaluate_pairs.summarize(points)
    evaluate_pairs.write(output, points, summary)
    click.echo(f"{len({p.pair for p in points})} pairs; results in {output}/")
    for line in evaluate_pairs.table(summary):
        click.echo(line)
    for item in skipped:
        click.echo(f"skipped: {item}", err=True)


@cli.command("eval")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--codec",
    "codecs",
    multiple=True,
    default=evaluate.DEFAULT_CODECS,
    show_default=True,
    help="repeat for several; dq-e1 and dq-e2 (dq at encoder effort 1, 2) only when asked for",
)
@click.option(
    "-o", "--output", type=click.Path(file_okay=False, path_type=Path), default=Path("eval-results"), show_default=True
)
@click.option(
    "--metric",
    type=click.Choice(["psnr", "ms-ssim"]),
    default="psnr",
    show_default=True,
    help="for the plot and BD-rate",
)
@click.option("--model", default=zoo.DEFAULT_MODEL, show_default=True)
@click.option(
    "--force",
    is_flag=True,
    help="replace the results of an earlier run in OUTPUT (all of them, so the folder holds one run)",
)
@click.option(
    "--pairs",
    is_flag=True,
    help="FOLDER holds pairs (a folder of two images each, or kind folders of them): pair files against two "
    "files per pair (dq, and JPEG, WebP, AVIF, JPEG XL of each view)",
)
def eval_command(folder, codecs, output, metric, model, force, pairs):
    """Rate–distortion of every codec at a sweep of rates on the images in FOLDER."""
    from dqcodec import codec, evaluate, extras

    try:
        extras.require("eval", "dqcodec eval")
    except dqcodec.DQCodecError as error:
        raise click.ClickException(str(error)) from None
    if pairs:
        _eval_pairs(folder, codecs, output, metric, model, force)
        return

    earlier = evaluate.previous_results(output)
    if earlier and not force:
        raise click.ClickException(
            f"{output} holds the results of an earlier run ({earlier[0].name}, ...); use --force to replace them, or another -o"
        )
    skipped = []
    made = []
    for name in dict.fromkeys(codecs):
        try:
            made.append(evaluate.make_codec(name, model))
        except ValueError as error:
            skipped.append(str(error))
    images = []
    for path in codec.image_files(folder):
        try:
            images.append((path, codec.load_image(path).convert("RGB")))
        except codec.UnsupportedImageError as error:
            skipped.append(str(error))
    if not images or not made:
        for item in skipped:
            click.echo(f"skipped: {item}", err=True)
        raise click.ClickException(
            f"nothing to evaluate: {len(images)} readable images in {folder}, {len(made)} codecs available"
        )
    points = []
    jobs = [(c, s, path, image) for path, image in images for c in made for s in c.settings]
    with click.progressbar(jobs, label="evaluating", file=sys.stderr) as bar:
        for c, setting, path, image in bar:
            try:
                points.append(evaluate.measure(c, image, setting, str(path.relative_to(folder))))
            except USER_ERRORS as error:
                skipped.append(f"{c.name} {setting} on {path}: {error}")
    summaries = [evaluate.summarize(c, [p for p in points if p.codec == c.name]) for c in made]
    for path in evaluate.previous_results(output):  # only now: a run that fails keeps the earlier results
        path.unlink()
    deltas = evaluate.write_results(output, summaries, points, metric)
    click.echo(f"{len(images)} images, {len(made)} codecs; results in {output}/")
    name_width = max(len("codec"), *(len(s.codec) for s in summaries))
    setting_width = max(len("setting"), *(len(str(setting)) for s in summaries for setting in s.settings))
    click.echo(
        f"{'codec':{name_width}} {'setting':>{setting_width}} {'bpp':>8} {'PSNR':>7} {'MS-SSIM':>8} {'enc s':>7} {'dec s':>7}"
    )
    for summary in summaries:
        r = summary.results
        for i, setting in enumerate(summary.settings):
            ms = "n/a" if r["ms-ssim-rgb"][i] is None else f"{r['ms-ssim-rgb'][i]:.4f}"
            click.echo(
                f"{summary.codec:{name_width}} {setting!s:>{setting_width}} {r['bpp'][i]:8.4f} {r['psnr-rgb'][i]:7.2f} {ms:>8}"
                f" {r['encoding_time'][i]:7.3f} {r['decoding_time'][i]:7.3f}"
            )
    for name, delta in deltas.items():
        click.echo(
            f"BD-rate of dq against {name} ({metric}): "
            + ("curves do not overlap" if delta is None else f"{delta:+.1f}%")
        )
    for item in skipped:
        click.echo(f"skipped: {item}", err=True)


@cli.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--codec",
    "codecs",
    multiple=True,
    default=("dq", "png", "webp", "jxl"),
    show_default=True,
    type=click.Choice(["dq", *evaluate_lossless.LOSSLESS_CODECS]),
    help="repeat for several",
)
@click.option(
    "--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="also write every figure here"
)
@click.option("--model", default=zoo.DEFAULT_LOSSLESS_MODEL, show_default=True)
@click.option(
    "-q", "--quality", type=int, help="quality of the codes in dq's files; default: the model's lossless quality"
)
def bpd(folder, codecs, json_path, model, quality):
    """Bits per dimension of lossless files (size / (H * W * 3)) for the images in FOLDER."""
    from dqcodec import codec

    files = codec.image_files(folder)
    if not files:
        raise click.ClickException(f"no images found in {folder}")
    points, skipped, made = [], [], []
    for name in dict.fromkeys(codecs):
        try:
            made.append(evaluate_lossless.make_lossless_codec(name, model, quality))
        except ValueError as error:
            skipped.append(str(error))
    with click.progressbar(files, label="lossless coding", file=sys.stderr) as bar:
        for path in bar:
            try:
                image = codec.load_image(path).convert("RGB")
            except codec.UnsupportedImageError as error:
                skipped.append(str(error))
                continue
            for c in made:
                try:
                    points.append(evaluate_lossless.measure_lossless(c, image, str(path.relative_to(folder))))
                except USER_ERRORS as error:
                    skipped.append(f"{path} with {c.name}: {error}")
    pooled = evaluate_lossless.pool_lossless(points)
    names = list(pooled)
    click.echo(
        f"{'image':30} "
        + " ".join(f"{n:>8}" for n in names)
        + ("   dq codes+pixels  estimate" if "dq" in names else "")
    )
    for image_name in dict.fromkeys(p.image for p in points):
        row = {p.codec: p for p in points if p.image == image_name}
        line = f"{image_name[-30:]:30} " + " ".join(
            f"{row[n].bits / row[n].dims:8.4f}" if n in row else f"{'-':>8}" for n in names
        )
        if "dq" in row:
            dq = row["dq"]
            line += f"   {dq.code_bits / dq.dims:.4f}+{dq.pixel_bits / dq.dims:.4f}  {dq.estimated_bits / dq.dims:.4f}"
        click.echo(line)
    click.echo(f"{'pooled (bits/dim)':30} " + " ".join(f"{pooled[n]['bpd']:8.4f}" for n in names))
    for name, row in pooled.items():
        extra = ""
        if name == "dq":
            gap = 100 * (row["bpd"] / row["estimated_bpd"] - 1)
            extra = f", codes {row['code_bpd']:.4f} + pixels {row['pixel_bpd']:.4f}, model estimate {row['estimated_bpd']:.4f} ({gap:+.2f}%)"
        exact = "every image exact" if row["all_exact"] else "NOT EXACT on some images"
        click.echo(
            f"{name}: {row['bpd']:.4f} bits/dim{extra}; {row['encode_s_per_mp']:.2f} s/MP encode, {row['decode_s_per_mp']:.2f} s/MP decode; {exact}"
        )
    if json_path:
        import dataclasses

        json_path.write_text(
            json.dumps(
                {"pooled": pooled, "images": [dataclasses.asdict(p) for p in points], "skipped": skipped}, indent=2
            )
        )
    for item in skipped:
        click.echo(f"skipped: {item}", err=True)
    if any(not row["all_exact"] for row in pooled.values()):
        raise click.ClickException("a lossless round trip was not exact")


@cli.command("export")
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", default=zoo.DEFAULT_MODEL, show_default=True)
@click.option(
    "--qualities",
    help="groups coded at each quality: each is G (the first level complete, G groups of the second, none below) or every level's groups joined by +, e.g. 1,2,4,16,16+4 or 4+16+4",
)
@click.option("--rate-weights", help="encoder rate weight at each quality, e.g. 0,0,0.1,0.3,1,1")
@click.option("--default-quality", type=int)
@click.option("--lossless-quality", type=int, help="the (lossy) quality whose codes lossless files carry")
@click.option(
    "--residual-steps",
    help="residual qualities after the lossy ones, each BASE:STEP (lossy quality BASE's codes, then the difference as 8x8 DCTs quantized with STEP), e.g. 2:48,2:24; 'none' for none",
)
@click.option(
    "--lossy-positions",
    help="the quality number of each lossy quality among the lossy and residual ones, rising from 1, e.g. 1,4 (residual qualities fill the others in order); 'none': the lossy ones first",
)
@click.option(
    "--residual-deblocking/--no-residual-deblocking",
    default=None,
    help="residual qualities decode with their 8x8 blocks' edges smoothed (dqcodec/residual.py's deblock); default: as the checkpoint's config",
)
@click.option(
    "--residual-rate-weight",
    type=float,
    help="the residual encoder's weight of bits against squared error (dqcodec/residual.py's rate_distortion_round; dq-3: 0.12, 0: plain rounding); default: as the checkpoint's config",
)
@click.option(
    "--tolerances",
    help="near-lossless qualities after the lossy and residual ones, each a tolerance d (samples decode within 2d), e.g. 12,10,8,6,4; 'none' for none (needs a pixel likelihood)",
)
@click.option(
    "--calibration",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="photos to round the weights on (GPTQ, see dqcodec/gptq.py), e.g. data/train; without them every weight is rounded to its nearest step, which costs rate and quality",
)
@click.option(
    "--calibration-images",
    default=16,
    show_default=True,
    type=click.IntRange(min=1),
    help="how many of those photos, spread over the folder (centre 256x256 crops)",
)
@click.option(
    "--base",
    help="an installed model whose tensors this one shares (e.g. the lossy model a pixel likelihood was trained on): those equal to its keep their stored values, so its files still code the same",
)
@click.option(
    "--force",
    is_flag=True,
    help="replace an installed model of the same name (its current version moves to models/previous/ and its legacy .pt versions stay, so the files written with them still decode)",
)
def export_model(
    checkpoint,
    name,
    qualities,
    rate_weights,
    default_quality,
    lossless_quality,
    residual_steps,
    lossy_positions,
    residual_deblocking,
    residual_rate_weight,
    tolerances,
    calibration,
    calibration_images,
    base,
    force,
):
    """Ship a training checkpoint as models/<name>-<hash>.dqw (weights quantized and entropy-coded,
    see dqcodec/weights.py), optionally with its own table of rate points."""
    import dataclasses

    from dqcodec import extras

    try:
        extras.require("torch", "dqcodec export")
    except dqcodec.DQCodecError as error:
        raise click.ClickException(str(error)) from None
    import torch

    from dqcodec import registry

    old = zoo.versions(name)
    if old and not force:
        raise click.ClickException(f"model {name!r} is installed ({old[0].path.name}); use --force to replace it")
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    model = zoo.from_checkpoint(state.get("model", state))
    changes = {
        "qualities": parse_qualities(qualities, model) if qualities else None,
        "rate_weights": [float(v) for v in rate_weights.split(",")] if rate_weights else None,
        "default_quality": default_quality,
        "lossless_quality": lossless_quality,
        "residual_steps": parse_residual_steps(residual_steps) if residual_steps else None,
        "lossy_positions": parse_whole_numbers(lossy_positions, "--lossy-positions") if lossy_positions else None,
        "residual_deblocking": residual_deblocking,
        "residual_rate_weight": residual_rate_weight,
        "tolerances": parse_whole_numbers(tolerances, "--tolerances") if tolerances else None,
    }
    changes = {k: v for k, v in changes.items() if v is not None}
    if not registry.is_dq(model):
        if changes:
            raise click.ClickException("--qualities, --rate-weights and the quality options apply to dq models only")
    else:
        try:
            model.config = dataclasses.replace(model.config, **changes)
        except ValueError as error:
            raise click.ClickException(str(error)) from None
    photos = None
    if calibration is not None:
        from dqcodec import codec, export

        files = codec.image_files(calibration)
        photos = export.calibration_images(files[:: max(1, len(files) // calibration_images)][:calibration_images])
        if not photos:
            raise click.ClickException(f"no images in {calibration}")
    path = zoo.export(model, name, calibration=photos, base=base)
    for m in old:
        if m.path != path and not m.legacy and not m.previous:
            zoo.retire(m.path)  # files written with it still decode
    click.echo(f"{path} ({path.stat().st_size / 1e6:.2f} MB) from step {state.get('step', '?')}")


def parse_residual_steps(text: str) -> list[list[int]]:
    if text == "none":
        return []
    try:
        return [[int(v) for v in pair.split(":")] for pair in text.split(",")]
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not a list of BASE:STEP pairs of whole numbers", param_hint="--residual-steps"
        ) from None


def parse_whole_numbers(text: str, option: str) -> list[int]:
    """An option's comma-separated whole numbers (--tolerances, --lossy-positions); 'none' for none."""
    if text == "none":
        return []
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a list of whole numbers", param_hint=option) from None


def parse_qualities(text: str, model) -> list[list[int]]:
    """--qualities of a dq model: groups of every level per quality (see the option's help)."""
    levels = [level.num_groups for level in model.levels]
    qualities = []
    for item in text.split(","):
        try:
            groups = [int(v) for v in item.split("+")]
        except ValueError:
            raise click.BadParameter(f"{item!r} is not a number of groups", param_hint="--qualities") from None
        if len(groups) == 1:
            groups = [levels[0], groups[0]] + [0] * (len(levels) - 2)
        qualities.append(groups)
    return qualities


@cli.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True}, add_help_option=False)
@click.pass_context
def train(ctx):
    """Train a dq model or a CompressAI baseline (`dqcodec train --help` for its options)."""
    from dqcodec import extras

    try:
        extras.require("torch", "dqcodec train")
    except dqcodec.DQCodecError as error:
        raise click.ClickException(str(error)) from None
    from dqcodec.training.cli import main  # torch, compressai: only when training

    main.main(args=ctx.args, prog_name=ctx.command_path, standalone_mode=False)


if __name__ == "__main__":
    cli()
