"""What near-lossless coding would give, before building it (docs/design.md, "The high rates: near-lossless
qualities"): a model's codes of one quality as real streams (bytes counted), then every sample's bin of
2d + 1 values around its mixture mean under the float pixel likelihood (-log2 of the bin's mass, not a real
stream), the steps and channels after it seeing the decoded values; Pillow's JPEG on the same images in the
same run. PSNR is of the mean squared error over the images, bpp the mean.

    python scripts/near_lossless_estimate.py dq-hier data/native --every 8 -q 2 --tolerances 4,6,8,10,12

Without --middle a bin decodes to the mixture's mean within it, as dqcodec's near-lossless qualities do
(samples within 2d); with it, to the bin's middle (samples within d, the l-infinity scheme of Bai et al.).
"""

import math

import click
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from dqcodec import codec, evaluate, registry, zoo
from dqcodec.pixel_model import BLOCK, MEAN_SCALE, STEPS, coupled_means, fold, split_params


def bin_mass(low, high, mean, log_scale):
    """P(low <= x <= high) under each logistic component, the end bins taking the tails."""
    inv_scale = torch.exp(-log_scale)
    up = torch.where(high >= 255, torch.ones_like(mean), torch.sigmoid((high + 0.5 - mean) * inv_scale))
    down = torch.where(low <= 0, torch.zeros_like(mean), torch.sigmoid((low - 0.5 - mean) * inv_scale))
    return (up - down).clamp_min(1e-9)


def decoded_value(low, high, width, log_weights, mean, log_scale, mixtures):
    """The mixture's mean over the values of each bin, rounded."""
    weights = log_weights.softmax(1)
    values = low.unsqueeze(1) + torch.arange(width).view(1, width, 1, 1)
    valid = values <= high.unsqueeze(1)
    values = values.clamp(max=255)
    numerator, denominator = torch.zeros_like(low), torch.zeros_like(low)
    for k in range(mixtures):
        p = bin_mass(values, values, mean[:, k : k + 1], log_scale[:, k : k + 1]) * valid
        numerator += weights[:, k] * (p * values).sum(1) / p.sum(1)
        denominator += weights[:, k]
    return (numerator / denominator).round()


@torch.no_grad()
def near_lossless(model, decoded, x255, tolerance, middle):
    """(estimated bits of the pixels, the decoded image) of one image."""
    context, x_hat = model._pixel_context(decoded)
    pixels = model.pixels
    base = 255 * x_hat.clamp(0, 1)
    width = 2 * tolerance + 1
    image = torch.zeros_like(x255)
    inside = torch.ones_like(x255[:1, :1])
    folded_x, folded_base = fold(x255), fold(base)
    mixtures = model.config.pixel_mixtures
    bits = 0.0
    for s, step in enumerate(STEPS):
        raw = pixels.params(context, s, (image - base) / MEAN_SCALE, inside)
        for i, (di, dj) in enumerate(step):
            p = di * BLOCK + dj
            logits, means, log_scales, coeffs = split_params(raw[:, i], mixtures)
            b, x = folded_base[:, :, p], folded_x[:, :, p]
            log_weights = F.log_softmax(logits, 1)
            residual, out = torch.zeros_like(b), torch.zeros_like(b)
            for c in range(3):
                mean = coupled_means(means, coeffs, b, residual, c)
                centre = (log_weights.softmax(1) * mean).sum(1).round().clamp(0, 255)
                k = torch.floor((x[:, c] - centre + tolerance) / width)
                low = (centre + k * width - tolerance).clamp(0, 255)
                high = (centre + k * width + tolerance).clamp(0, 255)
                mass = bin_mass(low.unsqueeze(1), high.unsqueeze(1), mean, log_scales[:, c])
                if middle or not tolerance:
                    out[:, c] = (centre + k * width).clamp(0, 255)
                else:
                    out[:, c] = decoded_value(low, high, width, log_weights + mass.log(), mean, log_scales[:, c], mixtures)
                log_weights = log_weights + mass.log()
                residual[:, c] = out[:, c] - b[:, c]
            bits += float(-torch.logsumexp(log_weights, 1).sum() / math.log(2))
            image[:, :, di::BLOCK, dj::BLOCK] = out
    return bits, image


@click.command()
@click.argument("model_name")
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@click.option("--every", default=8, show_default=True, help="take every Nth image of the folder")
@click.option("-q", "--quality", default=2, show_default=True, help="the quality of the codes")
@click.option("--tolerances", default="4,6,8,10,12", show_default=True)
@click.option("--middle", is_flag=True, help="decode a bin to its middle")
@click.option("--threads", default=2, show_default=True)
def main(model_name, folder, every, quality, tolerances, middle, threads):
    torch.set_num_threads(threads)
    if model_name.endswith(".pt"):
        model = registry.from_checkpoint(torch.load(model_name, weights_only=True, map_location="cpu")["model"]).eval()
    else:
        model = zoo.load(model_name)[0]
    tolerances = [int(v) for v in tolerances.split(",")]
    paths = codec.image_files(folder)[::every]
    jpeg = evaluate.make_codec("jpeg")
    sums = {}
    for path in paths:
        image = Image.open(path).convert("RGB")
        original = np.asarray(image).astype(np.float64)
        x = codec.pad(codec.to_tensor(image))
        x255 = (x * 255).round()
        streams = model.new_streams()
        decoded = model.encode_region(model.analyse(x), x, quality, streams)
        code_bits = 8 * sum(len(s.to_bytes()) for s in streams)
        for d in tolerances:
            bits, decoded_image = near_lossless(model, decoded, x255, d, middle)
            error = decoded_image[0, :, : image.height, : image.width].permute(1, 2, 0).numpy() - original
            row = sums.setdefault(f"dq q{quality} d={d}", [0.0, 0.0])
            row[0] += (code_bits + bits) / (image.width * image.height)
            row[1] += float((error**2).mean())
        for jpeg_quality in (50, 70, 80, 90, 95):
            data = jpeg.encode(image, jpeg_quality)
            row = sums.setdefault(f"jpeg {jpeg_quality}", [0.0, 0.0])
            row[0] += 8 * len(data) / (image.width * image.height)
            row[1] += float(((np.asarray(jpeg.decode(data).convert("RGB")) - original) ** 2).mean())
    click.echo(f"{len(paths)} images of {folder}, model {model_name}")
    for name, (bpp, mse) in sums.items():
        psnr = 10 * math.log10(255**2 / max(mse / len(paths), 1e-12))
        click.echo(f"{name:16s} {bpp / len(paths):7.4f} bpp  {psnr:6.2f} dB")


if __name__ == "__main__":
    main()
