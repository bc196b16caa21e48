#include "sluice/content_decoder.hpp"

#include <zlib.h>

#include <array>

namespace sluice {
namespace {

constexpr int kGzipWindowBits = 15 + 16;  // zlib: +16 selects the gzip wrapper
constexpr int kZlibWindowBits = 15;
constexpr std::size_t kOutputChunk = 16384;

}  // namespace

struct ContentDecoder::Stream {
  z_stream z{};
  bool initialised = false;
  ~Stream() {
    if (initialised) inflateEnd(&z);
  }
};

ContentDecoder::ContentDecoder(DecodeLimits limits) : limits_(limits) {}
ContentDecoder::~ContentDecoder() = default;

void ContentDecoder::release() {
  stream_.reset();
}

RequestReason ContentDecoder::fail(RequestReason reason) {
  failure_ = reason;
  release();
  return reason;
}

void ContentDecoder::begin(ContentEncoding encoding) {
  encoding_ = encoding;
  failure_ = RequestReason::ok;
  ended_ = false;
  input_ = output_ = 0;
  release();
  if (encoding == ContentEncoding::kIdentity) return;
  stream_ = std::make_unique<Stream>();
  const int bits = encoding == ContentEncoding::kGzip ? kGzipWindowBits : kZlibWindowBits;
  if (inflateInit2(&stream_->z, bits) != Z_OK) {
    fail(RequestReason::content_bad_compressed_data);
    return;
  }
  stream_->initialised = true;
}

RequestReason ContentDecoder::feed(std::span<const uint8_t> bytes, DecodedSink& sink) {
  if (failure_ != RequestReason::ok) return failure_;
  input_ += bytes.size();
  if (encoding_ == ContentEncoding::kIdentity) {
    output_ += bytes.size();
    if (!bytes.empty()) sink.on_decoded(bytes);
    return RequestReason::ok;
  }
  if (bytes.empty()) return RequestReason::ok;
  // Bytes after the end of the compressed stream: another gzip member or garbage; refused
  // rather than guessed at.
  if (ended_) return fail(RequestReason::content_bad_compressed_data);
  z_stream& z = stream_->z;
  z.next_in = const_cast<Bytef*>(bytes.data());
  z.avail_in = static_cast<uInt>(bytes.size());
  std::array<uint8_t, kOutputChunk> out;
  while (z.avail_in > 0 && !ended_) {
    z.next_out = out.data();
    z.avail_out = static_cast<uInt>(out.size());
    const int status = inflate(&z, Z_NO_FLUSH);
    if (status != Z_OK && status != Z_STREAM_END && status != Z_BUF_ERROR) {
      return fail(RequestReason::content_bad_compressed_data);
    }
    const std::size_t produced = out.size() - z.avail_out;
    output_ += produced;
    if (output_ > limits_.max_output_bytes ||
        (output_ > limits_.ratio_grace_bytes && output_ > input_ * limits_.max_ratio)) {
      return fail(RequestReason::content_decompression_bomb);
    }
    if (produced > 0) sink.on_decoded({out.data(), produced});
    if (status == Z_STREAM_END) {
      ended_ = true;
      if (z.avail_in > 0) return fail(RequestReason::content_bad_compressed_data);
    }
    if (status == Z_BUF_ERROR && produced == 0) break;  // needs more input
  }
  return RequestReason::ok;
}

RequestReason ContentDecoder::finish() {
  if (failure_ != RequestReason::ok) return failure_;
  const bool complete = encoding_ == ContentEncoding::kIdentity || ended_;
  release();
  return complete ? RequestReason::ok : fail(RequestReason::content_bad_compressed_data);
}

}  // namespace sluice
