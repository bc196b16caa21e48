// The framing of a text/event-stream body (WHATWG HTML §9.2.6, "Interpreting an event stream"),
// reduced to what a reader of the events' data needs: the data of each event, in pieces, and
// where each event ends. Shared by usage_scanner and completion_extractor, which read each
// event's data as one JSON text, streamed, never buffered.
//
// What it follows: lines end in CRLF, LF or CR (a CR at the end of one piece and an LF at the
// start of the next are one line end); a UTF-8 byte order mark is dropped at the very start of
// the stream only; a line `data` or `data:VALUE` adds VALUE (one leading space dropped) to the
// event's data, and the data lines of one event are joined with "\n"; comments (`:`), event, id,
// retry and unknown fields are skipped; an empty line ends an event that has data (one without
// data dispatches nothing). The event type, id and retry are not kept: nobody here needs them.
//
// Use: a pull parser. read() consumes framing bytes until it has a piece to hand over — a run of
// data bytes (a view into the fed bytes, or the one-byte "\n" join) or the end of an event — and
// says where to read on; feed() is that loop over a piece of the body, with two inline callbacks.
// One call per piece, not per byte: a data line is found with memchr and handed over whole (or up
// to the end of the fed bytes). The reader keeps no data: its state is 4 bytes, inline, trivially
// copyable; it never allocates.
#pragma once

#include <cstdint>
#include <span>

namespace sluice {

class EventStreamReader {
 public:
  enum class Kind : uint8_t {
    kNeedMore,  // the bytes are used up: feed the next piece of the body
    kData,      // `data` holds bytes of the current event's data, in order (never empty)
    kEventEnd,  // the current event has ended (it had data: at least one data line)
  };
  struct Piece {
    Kind kind;
    std::span<const uint8_t> data;  // kData only; valid while the fed bytes are
    const uint8_t* rest;            // where to read on: the byte after the piece
  };

  // Ready for the first byte of a stream; `reader = {}` starts a new one.
  EventStreamReader() = default;

  // Reads [p, end) up to the next piece. Call again from piece.rest while it is before end.
  Piece read(const uint8_t* p, const uint8_t* end);

  // Reads all of `bytes`: on_data(std::span<const uint8_t>) for each data piece,
  // on_event_end() for each event end, in stream order. Inline: the callbacks are not virtual.
  template <typename OnData, typename OnEventEnd>
  void feed(std::span<const uint8_t> bytes, OnData&& on_data, OnEventEnd&& on_event_end) {
    const uint8_t* p = bytes.data();
    const uint8_t* const end = p + bytes.size();
    while (p < end) {
      const Piece piece = read(p, end);
      p = piece.rest;
      if (piece.kind == Kind::kData) {
        on_data(piece.data);
      } else if (piece.kind == Kind::kEventEnd) {
        on_event_end();
      }
    }
  }

  // The stream has ended. True when an event with data is still open: the spec discards it, but
  // the readers here read it as ended (a host may close without the last blank line). Calling it
  // again returns false.
  bool finish();

  // Where the reader stands, for a writer that must end the current event itself.
  bool in_data_value() const { return line_ == Line::kDataSpace || line_ == Line::kData; }
  bool at_line_start() const { return line_ == Line::kBom || line_ == Line::kStart; }
  bool in_field_name() const { return line_ == Line::kName; }
  bool event_has_data() const { return event_has_data_; }

 private:
  enum class Line : uint8_t {
    kBom,        // the stream's first bytes: a UTF-8 byte order mark is dropped
    kStart,      // at the start of a line
    kName,       // a field name that matches matched_ bytes of "data" so far
    kDataSpace,  // just after "data:": one space is dropped
    kData,       // a data value: its bytes are handed over
    kIgnore,     // a comment, another field, or a name that is not "data": skipped to its end
  };

  bool start_data_line();
  void end_line(uint8_t terminator);

  Line line_ = Line::kBom;
  uint8_t matched_ = 0;    // bytes of the byte order mark, or of the field name "data", matched
  bool after_cr_ = false;  // the last line ended in CR: an LF next belongs to it
  bool event_has_data_ = false;
};

}  // namespace sluice
