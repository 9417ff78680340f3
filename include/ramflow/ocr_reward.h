#pragma once
// The OCR reward `ocr` (full library: it links Tesseract): each image is read by Tesseract in
// process, in single-line mode with the characters of `alphabet` only, and scored against the text
// it should show (its condition's text, or the spec's fixed `text`) by the formula of Flow-GRPO's
// and flow-control's OCR reward, ocr_text_score below. Not differentiable.
//
// Spec fields (all optional):
//   text       the text every image should show; without it, sample i's condition text
//   alphabet   the characters Tesseract may answer with ("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
//   ink        "light" (light text on a dark ground, the words task's images) or "dark"
//   upscale    each pixel drawn as an upscale x upscale block before reading (1)
//   min_confidence  words Tesseract reads with a confidence (0-100) at or below this are dropped
//              (10): on an image without text, single-line mode still names letters, at confidence
//              0
//   language   Tesseract's language data ("eng": eng.traineddata)
//   tessdata   the folder of the language data; else $TESSDATA_PREFIX, else Debian's
//              /usr/share/tesseract-ocr/{5,4.00}/tessdata
// Images are [B, C, H, W] in the data range [-1, 1], C = 1 or 3 (3: the channels' mean). A white
// (ground-coloured) border of 8 pixels is added around each image, as Tesseract expects a margin.
// One Tesseract engine per thread that scores (engines are kept for the reward's lifetime); an
// image that Tesseract cannot read scores 0. Beside the score, the reward's term "exact_match" is 1
// where the recognised text equals the target (both normalised as below), else 0: evaluation's
// exact-match rate. The language data is found and loaded when the reward
// is built, so a missing file is a ConfigError before any compute.
#include <string>

namespace ramflow {

/// The OCR score of one image: both texts lower-cased with every space removed; d = 0 when the
/// target is a substring of the recognised text, else the Levenshtein distance between them; the
/// score is 1 - min(d, n) / n, n the target's length (so in [0, 1]; 1 - 1/n for one wrong letter).
/// An empty target is an std::invalid_argument.
double ocr_text_score(const std::string& target, const std::string& recognised);

}  // namespace ramflow
