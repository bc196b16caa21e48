// Decoding of a request body's Content-Encoding (gzip, deflate) in a stream, with caps: the
// decoded size and the expansion ratio are bounded, so a decompression bomb fails closed
// (content_decompression_bomb) instead of filling memory or the scanner.
#pragma once

#include <cstdint>
#include <memory>
#include <span>

#include "sluice/http_request.hpp"
#include "sluice/request_reason.hpp"

namespace sluice {

struct DecodeLimits {
  uint64_t max_output_bytes = 4u << 20;
  uint32_t max_ratio = 100;            // decoded bytes per encoded byte, checked past the grace
  uint64_t ratio_grace_bytes = 65536;  // small bodies may expand more (a short prompt of spaces)
};

class DecodedSink {
 public:
  virtual ~DecodedSink() = default;
  virtual void on_decoded(std::span<const uint8_t> bytes) = 0;
};

class ContentDecoder {
 public:
  explicit ContentDecoder(DecodeLimits limits = {});
  ~ContentDecoder();
  ContentDecoder(const ContentDecoder&) = delete;
  ContentDecoder& operator=(const ContentDecoder&) = delete;

  // Starts a body. Identity passes bytes through; gzip and deflate (RFC 1950 zlib format, as
  // RFC 9110 §8.4.1.2 defines it) are inflated. zlib's state (≈ 44 KiB) exists only while a
  // compressed body is being read.
  void begin(ContentEncoding encoding);
  RequestReason feed(std::span<const uint8_t> bytes, DecodedSink& sink);
  // The body ended: ok only if the compressed stream ended exactly there.
  RequestReason finish();

  uint64_t decoded_bytes() const { return output_; }

 private:
  struct Stream;
  RequestReason fail(RequestReason reason);
  void release();

  DecodeLimits limits_;
  ContentEncoding encoding_ = ContentEncoding::kIdentity;
  std::unique_ptr<Stream> stream_;
  bool ended_ = false;
  RequestReason failure_ = RequestReason::ok;
  uint64_t input_ = 0;
  uint64_t output_ = 0;
};

}  // namespace sluice
