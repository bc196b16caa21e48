// libFuzzer harness for the streaming completion-text extractor.
//
// Any input is read twice: declared a plain JSON body and declared an event stream (its first
// bytes may say otherwise: `{` is JSON, a first byte that starts an event-stream line a stream).
// Each reading is fed whole, in two and in three pieces cut at points derived from the input, and
// (when short) byte by byte; every way must hand out the same fields (the text of each,
// concatenated over its pieces) and the same malformed(). Every piece must be non-empty, valid
// UTF-8 on its own (so no piece splits a character), and belong to a field that is then ended. The
// result must equal what a whole-input reference written separately here says: a recursive descent
// over the JSON text that decodes each field's string in one go (every string but the excluded
// keys' values and the excluded trees; in a stream, the indexes that name each choice's text and
// the slots the texts take are checked as the extractor does) (valid bodies: every field's text;
// malformed ones: the text up to the first bad byte), and the event stream split into lines and
// events as the WHATWG algorithm describes it. Besides: a reused extractor reads like a fresh one;
// an input without line breaks sent as one `data:` line reads like the plain body. Build with
// -fsanitize=fuzzer,address,undefined; seeds are in tests/fuzz/corpus/completion_extractor/.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "sluice/completion_extractor.hpp"

namespace sluice {
namespace {

// Each message names its invariant, so the message alone says which one failed.
void require(bool holds, const char* what) {
  if (holds) return;
  std::fprintf(stderr, "completion_extractor_fuzz: invariant violated: %s\n", what);
  std::abort();
}

struct Extracted {
  std::vector<std::string> fields;
  bool malformed = false;
  bool operator==(const Extracted&) const = default;
};

const std::string kReplacement = "\xEF\xBF\xBD";
constexpr std::string_view kWhitespace = " \t\r\n";

// RFC 3629, strictly.
bool valid_utf8(std::string_view text) {
  std::size_t i = 0;
  while (i < text.size()) {
    const auto c = static_cast<uint8_t>(text[i]);
    std::size_t length = 1;
    uint8_t low = 0x80, high = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) {
      length = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
      length = 3;
      if (c == 0xe0) low = 0xa0;
      if (c == 0xed) high = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      length = 4;
      if (c == 0xf0) low = 0x90;
      if (c == 0xf4) high = 0x8f;
    } else if (c >= 0x80) {
      return false;
    }
    if (text.size() - i < length) return false;
    for (std::size_t k = 1; k < length; ++k) {
      const auto b = static_cast<uint8_t>(text[i + k]);
      if (b < (k == 1 ? low : 0x80) || b > (k == 1 ? high : 0xbf)) return false;
    }
    i += length;
  }
  return true;
}

class NullSink final : public CompletionSink {
 public:
  void on_completion_text(std::string_view) override {}
  void on_completion_field_end() override {}
};

class CheckingSink : public CompletionSink {
 public:
  void on_completion_text(std::string_view utf8) override {
    require(!utf8.empty(), "no empty piece");
    require(valid_utf8(utf8), "each piece is valid UTF-8 on its own");
    current_ += utf8;
    open_ = true;
  }
  void on_completion_field_end() override {
    fields_.push_back(std::move(current_));
    current_.clear();
    open_ = false;
  }
  std::vector<std::string> take() {
    require(!open_, "every piece belongs to a field that ends");
    return std::move(fields_);
  }

 private:
  std::vector<std::string> fields_;
  std::string current_;
  bool open_ = false;
};

// ---- Reference ----------------------------------------------------------------------------

void append_code_point(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xc0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xe0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else {
    out += static_cast<char>(0xf0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  }
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// The texts of a stream as the extractor gives them slots, kept across the events of one stream:
// identities are strings here ("r<key>" at the root, "c<key>|<field path>" in a choice); the
// least recently fed text gives up its slot; a given-up root key, or one of the last kRetiredTexts
// given-up identities of choices, may not come back, nor may a choice that lost one beyond those
// start a new text.
struct TextSlots {
  static constexpr std::size_t kSlots = CompletionExtractor::kMaxTexts;
  std::string ids[kSlots];
  int owners[kSlots] = {};  // root: key; choice: 64 + key
  uint64_t stamps[kSlots] = {};
  uint64_t stamp = 0;
  std::size_t used = 0;
  uint64_t retired = 0, lost = 0;
  std::string ring[CompletionExtractor::kRetiredTexts];
  int ring_owners[CompletionExtractor::kRetiredTexts] = {};  // 0: empty or root
  std::size_t ring_next = 0;
  int content_item = 0, content_part = 0;  // Responses: output_index + 1 and its content_index
  // False: the text's slot was given up to another text, which cannot be told apart.
  bool choose(const std::string& id, int owner) {
    ++stamp;
    for (std::size_t i = 0; i < used; ++i) {
      if (ids[i] != id) continue;
      stamps[i] = stamp;
      return true;
    }
    const bool choice = owner >= 64;
    if (!choice && (retired >> owner & 1) != 0) return false;
    if (choice) {
      if ((lost >> (owner - 64) & 1) != 0) return false;
      for (std::size_t r = 0; r < CompletionExtractor::kRetiredTexts; ++r)
        if (ring_owners[r] == owner && ring[r] == id) return false;
    }
    std::size_t slot = used;
    if (used < kSlots) {
      ++used;
    } else {
      slot = 0;
      for (std::size_t i = 1; i < kSlots; ++i)
        if (stamps[i] < stamps[slot]) slot = i;
      if (owners[slot] < 64) {
        retired |= uint64_t{1} << owners[slot];
      } else {
        if (ring_owners[ring_next] >= 64) lost |= uint64_t{1} << (ring_owners[ring_next] - 64);
        ring[ring_next] = ids[slot];
        ring_owners[ring_next] = owners[slot];
        ring_next = (ring_next + 1) % CompletionExtractor::kRetiredTexts;
      }
    }
    ids[slot] = id;
    owners[slot] = owner;
    stamps[slot] = stamp;
    return true;
  }
};

// The extractor's rules as a recursive descent over one whole JSON text: every string is text
// but the values of the excluded keys and everything under the excluded trees; in a stream, the
// indexes that name a choice's or the event's text are checked.
class ReferenceJson {
 public:
  // `done_allowed`: an event's data, where `[DONE]` is a valid text. `slots`: the stream's (null
  // for a plain body).
  static Extracted read(std::string_view text, bool done_allowed, TextSlots* slots = nullptr) {
    ReferenceJson reader(text, slots);
    reader.skip_whitespace();
    bool valid = false;
    if (done_allowed && reader.at('[')) {
      valid = reader.text_.substr(reader.pos_, 6) == "[DONE]";
      reader.pos_ += 6;
    } else if (reader.at('{')) {
      valid = reader.value(0, Context::kRoot, &reader.root_key_);
    }
    if (valid) {
      reader.skip_whitespace();
      valid = reader.pos_ == text.size();
    }
    return {std::move(reader.fields_), !valid};
  }

 private:
  enum class Context {
    kText,
    kRoot,
    kChoices,
    kChoice,
    kIndex,
    kContentIndex,
    kExcluded,
    kTree,
    kBlockDelta
  };
  struct TextKey {
    int value = 0;
    bool used = false;
  };

  ReferenceJson(std::string_view text, TextSlots* slots) : text_(text), slots_(slots) {}

  // The field path of a container inside the current choice (completion_extractor.hpp), level
  // = depth - 3; "\x01" once an escaped key is on it.
  struct Level {
    std::string path;
    bool array = false;
    int count = 0;    // elements so far (an array)
    TextKey element;  // the element's key (position or `index`), when it is one
  };
  static constexpr int kLevels = CompletionExtractor::kPathDepth;
  static std::string with_key(const std::string& path, std::string_view key) {
    if (path == "\x01" || key.find('\\') != std::string_view::npos) return "\x01";
    const std::size_t kept = CompletionExtractor::kBufferBytes;
    return path + "." + std::string(key.substr(0, kept)) + (key.size() > kept ? "+" : "");
  }
  static std::string with_element(const std::string& path, int key) {
    return path == "\x01" ? path : path + "[" + std::to_string(key) + "]";
  }
  bool in_choice() const { return slots_ != nullptr && choice_open_ && !hidden_; }
  // A container opens at `depth` inside the choice: its level, when told apart. False: none.
  bool open_level(int depth, bool array) {
    if (!choice_open_ || slots_ == nullptr || depth < 3 || depth - 3 >= kLevels) return false;
    Level level;
    level.array = array;
    if (depth == 3) {
      level.path = "C";
    } else {
      Level& parent = levels_.back();
      if (parent.array) {
        level.element.value = parent.count;
        if (parent.count < 255) ++parent.count;
        level.path = with_element(parent.path, level.element.value);
      } else if (depth == 4) {
        level.path = parent.path;  // delta, message: merged into one message
      } else {
        level.path = with_key(parent.path, key_);
      }
    }
    levels_.push_back(level);
    return true;
  }

  bool at(char c) const { return pos_ < text_.size() && text_[pos_] == c; }
  bool at_digit() const { return pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9'; }
  void skip_whitespace() {
    while (pos_ < text_.size() && kWhitespace.find(text_[pos_]) != std::string_view::npos) ++pos_;
  }

  static Context member(Context object, std::string_view key) {
    if (key.find('\\') != std::string_view::npos) return Context::kText;  // never excluded
    if (object == Context::kRoot && key == "choices") return Context::kChoices;
    if (object == Context::kRoot && (key == "delta" || key == "content_block"))
      return Context::kBlockDelta;
    if ((object == Context::kRoot && (key == "index" || key == "output_index")) ||
        (object == Context::kChoice && key == "index"))
      return Context::kIndex;
    if (object == Context::kRoot && key == "content_index") return Context::kContentIndex;
    for (std::string_view tree : {"usage", "logprobs", "top_logprobs"}) {
      if (key == tree) return Context::kTree;
    }
    for (std::string_view excluded : {"id",
                                      "object",
                                      "created",
                                      "created_at",
                                      "completed_at",
                                      "model",
                                      "system_fingerprint",
                                      "service_tier",
                                      "finish_reason",
                                      "stop_reason",
                                      "done_reason",
                                      "stop_sequence",
                                      "role",
                                      "type",
                                      "status",
                                      "index",
                                      "item_id",
                                      "call_id",
                                      "tool_call_id",
                                      "response_id",
                                      "previous_response_id",
                                      "event_id",
                                      "obfuscation",
                                      "encrypted_content",
                                      "signature",
                                      "data",
                                      "b64_json",
                                      "expires_at",
                                      "output_index",
                                      "content_index",
                                      "sequence_number"}) {
      if (key == excluded) return Context::kExcluded;
    }
    return Context::kText;
  }

  // `depth`: containers open around the value; `key`: the text its strings belong to.
  bool value(int depth, Context context, TextKey* key) {
    skip_whitespace();
    if (pos_ == text_.size()) return false;
    switch (text_[pos_]) {
      case '{':
        return object(depth + 1, context, key);
      case '[':
        return array(depth + 1, context, key);
      case '"':
        count_scalar(depth);
        return string_value(depth, context, key);
      case 't':
        count_scalar(depth);
        return word("true");
      case 'f':
        count_scalar(depth);
        return word("false");
      case 'n':
        count_scalar(depth);
        return word("null");
      default: {
        count_scalar(depth);
        const std::size_t start = pos_;
        if (!number()) return false;
        if ((context != Context::kIndex && context != Context::kContentIndex) || slots_ == nullptr)
          return true;
        // An index names a text: a whole number up to 63 that does not contradict the text
        // that went out before it.
        const std::string_view digits = text_.substr(start, pos_ - start);
        if (digits.find_first_not_of("0123456789") != std::string_view::npos) return false;
        if (digits.size() > 2 || std::stoi(std::string(digits)) > 63) return false;
        const int index = std::stoi(std::string(digits));
        if (context == Context::kContentIndex) {
          // A part of the output item read so far that comes back after a later one: cut.
          const int item = root_key_.value + 1;
          if (slots_->content_item == item && index < slots_->content_part) return false;
          slots_->content_item = item;
          slots_->content_part = index;
          return true;
        }
        if (key->used && key->value != index) return false;
        key->value = index;
        return true;
      }
    }
  }

  bool string_value(int depth, Context context, TextKey* key) {
    const bool field = context == Context::kText || context == Context::kChoices ||
                       context == Context::kRoot || context == Context::kChoice ||
                       context == Context::kBlockDelta;
    if (field && !hidden_) {
      if (slots_ != nullptr && choice_open_ && depth >= 3) {
        key->used = true;
        std::string path;
        if (depth - 3 >= kLevels) {
          path = levels_[kLevels - 1].path;
        } else {
          const Level& container = levels_[depth - 3];
          path = container.array ? with_element(container.path, container.count - 1)
                                 : with_key(container.path, key_);
        }
        for (Level& level : levels_) level.element.used = true;
        if (path == "\x01") return false;  // an escaped key names the field
        if (!slots_->choose("c" + std::to_string(key->value) + "|" + path, 64 + key->value))
          return false;
      } else if (slots_ != nullptr && block_open_ && depth >= 2) {
        // An Anthropic block's field: the key below root.delta / root.content_block.
        key->used = true;
        if (block_field_ == "\x01") return false;
        if (!slots_->choose("b" + std::to_string(key->value) + "|" + block_field_, 64 + key->value))
          return false;
      } else if (slots_ != nullptr) {
        key->used = true;
        if (!slots_->choose("r" + std::to_string(key->value), key->value)) return false;
      }
      std::string text;
      const bool valid = decode(text);
      fields_.push_back(std::move(text));  // a field cut by a failure still ends
      return valid;
    }
    std::string_view raw;
    return skip_string(raw);
  }

  // A scalar element of an array inside the choice takes its position.
  void count_scalar(int depth) {
    if (!choice_open_ || slots_ == nullptr || depth < 3 || depth - 3 >= kLevels) return;
    Level& container = levels_[depth - 3];
    if (container.array && container.count < 255) ++container.count;
  }

  bool object(int depth, Context context, TextKey* key) {
    if (depth > 64) return false;
    const bool tree = context == Context::kTree && !hidden_;
    if (tree) hidden_ = true;
    const Context role = depth == 1                    ? Context::kRoot
                         : context == Context::kChoice ? Context::kChoice
                                                       : Context::kText;
    TextKey choice_key;
    if (role == Context::kChoice) {
      if (choice_count_ > 63) return false;
      choice_key.value = choice_count_;
      key = &choice_key;
      choice_open_ = true;
      levels_.clear();
    }
    const bool block = depth == 2 && context == Context::kBlockDelta;
    if (block) block_open_ = true;
    const bool element = choice_open_ && slots_ != nullptr && depth > 3 && depth - 3 < kLevels &&
                         levels_[depth - 4].array;
    const bool level = open_level(depth, false);
    if (context == Context::kChoice) ++choice_count_;
    ++pos_;
    skip_whitespace();
    bool valid = true;
    if (at('}')) {
      ++pos_;
    } else {
      while (true) {
        skip_whitespace();
        std::string_view name;
        if (!at('"') || !skip_string(name)) return false;
        Context member_context = member(role, name);
        skip_whitespace();
        if (!at(':')) return false;
        ++pos_;
        key_ = name;
        if (block && !hidden_) block_field_ = with_key("", name);
        skip_whitespace();
        if (in_choice() && element && name == "index" && (at_digit() || at('-'))) {
          // A tool call's index names its element: checked as a choice's index is.
          Level& self = levels_[depth - 3];
          TextKey checked = self.element;
          if (!value(depth, Context::kIndex, &checked)) return false;
          if (checked.value != self.element.value) {
            self.element.value = checked.value;
            self.path = with_element(levels_[depth - 4].path, checked.value);
          }
        } else if (!value(depth, member_context, key)) {
          return false;
        }
        skip_whitespace();
        if (at(',')) {
          ++pos_;
        } else if (at('}')) {
          ++pos_;
          break;
        } else {
          return false;
        }
      }
    }
    if (level) levels_.pop_back();
    if (role == Context::kChoice) choice_open_ = false;
    if (block) block_open_ = false;
    if (tree) hidden_ = false;
    return valid;
  }

  bool array(int depth, Context context, TextKey* key) {
    if (depth > 64) return false;
    const bool tree = context == Context::kTree && !hidden_;
    if (tree) hidden_ = true;
    // The elements of root.choices are choices; any other array's strings are text.
    const Context items =
        context == Context::kChoices && depth == 2 ? Context::kChoice : Context::kText;
    if (items == Context::kChoice) choice_count_ = 0;
    if (context == Context::kChoice) ++choice_count_;
    const bool level = open_level(depth, true);
    ++pos_;
    skip_whitespace();
    if (at(']')) {
      ++pos_;
    } else {
      while (true) {
        if (!value(depth, items, key)) return false;
        skip_whitespace();
        if (at(',')) {
          ++pos_;
        } else if (at(']')) {
          ++pos_;
          break;
        } else {
          return false;
        }
      }
    }
    if (level) levels_.pop_back();
    if (tree) hidden_ = false;
    return true;
  }

  // At '"'; `raw` gets the text between the quotes, escapes as written.
  bool skip_string(std::string_view& raw) {
    const std::size_t start = ++pos_;
    while (pos_ < text_.size()) {
      const char c = text_[pos_];
      if (c == '"') {
        raw = text_.substr(start, pos_ - start);
        ++pos_;
        return true;
      }
      if (static_cast<unsigned char>(c) < 0x20) return false;
      ++pos_;
      if (c != '\\') continue;
      if (pos_ == text_.size()) return false;
      const char escape = text_[pos_++];
      if (escape == 'u') {
        for (int i = 0; i < 4; ++i, ++pos_) {
          if (pos_ == text_.size() || hex_digit(text_[pos_]) < 0) return false;
        }
      } else if (std::string_view("\"\\/bfnrt").find(escape) == std::string_view::npos) {
        return false;
      }
    }
    return false;
  }

  // The \uXXXX at `at`, or -1 (short or not hex).
  int escape_unit(std::size_t at) const {
    if (text_.size() - at < 6 || text_[at] != '\\' || text_[at + 1] != 'u') return -1;
    int unit = 0;
    for (std::size_t i = at + 2; i < at + 6; ++i) {
      const int digit = hex_digit(text_[i]);
      if (digit < 0) return -1;
      unit = unit * 16 + digit;
    }
    return unit;
  }

  // At '"': decodes the string into `out`, looking ahead as far as each character needs. On a
  // failure `out` holds the text before it (a character or surrogate pair left unfinished by the
  // end of the input is not in it).
  bool decode(std::string& out) {
    ++pos_;
    while (true) {
      if (pos_ == text_.size()) return false;
      const auto c = static_cast<uint8_t>(text_[pos_]);
      if (c == '"') {
        ++pos_;
        return true;
      }
      if (c < 0x20) return false;
      if (c == '\\') {
        if (pos_ + 1 == text_.size()) return false;
        const char escape = text_[pos_ + 1];
        if (escape != 'u') {
          static constexpr std::string_view kFrom = "\"\\/bfnrt", kTo = "\"\\/\b\f\n\r\t";
          const std::size_t which = kFrom.find(escape);
          if (which == std::string_view::npos) return false;
          out += kTo[which];
          pos_ += 2;
          continue;
        }
        const int unit = escape_unit(pos_);
        if (unit < 0) return false;
        pos_ += 6;
        if (unit >= 0xdc00 && unit <= 0xdfff) {
          out += kReplacement;
        } else if (unit >= 0xd800 && unit <= 0xdbff) {
          // Its low half must follow at once as \uXXXX. Until the input says whether it does, the
          // high half is pending: the end of the input (or a bad hex digit) drops it.
          const std::size_t left = text_.size() - pos_;
          if (left == 0 || (left == 1 && text_[pos_] == '\\')) return false;
          if (text_[pos_] == '\\' && text_[pos_ + 1] == 'u') {
            const int low = escape_unit(pos_);
            if (low < 0) return false;
            if (low >= 0xdc00 && low <= 0xdfff) {
              append_code_point(out, 0x10000 + ((unit - 0xd800) << 10) + (low - 0xdc00));
              pos_ += 6;
              continue;
            }
          }
          out += kReplacement;  // alone; what follows is read on its own
        } else {
          append_code_point(out, static_cast<uint32_t>(unit));
        }
        continue;
      }
      if (c < 0x80) {
        out += static_cast<char>(c);
        ++pos_;
        continue;
      }
      // WHATWG UTF-8 decode: a maximal ill-formed subpart is one U+FFFD.
      std::size_t continuations = 0;
      uint8_t low = 0x80, high = 0xbf;
      if (c >= 0xc2 && c <= 0xdf) {
        continuations = 1;
      } else if (c >= 0xe0 && c <= 0xef) {
        continuations = 2;
        low = c == 0xe0 ? 0xa0 : 0x80;
        high = c == 0xed ? 0x9f : 0xbf;
      } else if (c >= 0xf0 && c <= 0xf4) {
        continuations = 3;
        low = c == 0xf0 ? 0x90 : 0x80;
        high = c == 0xf4 ? 0x8f : 0xbf;
      } else {
        out += kReplacement;
        ++pos_;
        continue;
      }
      std::size_t k = 1;
      for (; k <= continuations; ++k) {
        if (pos_ + k == text_.size()) return false;
        const auto b = static_cast<uint8_t>(text_[pos_ + k]);
        if (b < (k == 1 ? low : 0x80) || b > (k == 1 ? high : 0xbf)) break;
      }
      if (k <= continuations) {
        out += kReplacement;
        pos_ += k;  // the byte that broke the sequence is read again
        continue;
      }
      out.append(text_.substr(pos_, continuations + 1));
      pos_ += continuations + 1;
    }
  }

  bool word(std::string_view literal) {
    // Compared byte by byte, so a bad byte fails where the extractor fails.
    for (char c : literal) {
      if (!at(c)) return false;
      ++pos_;
    }
    return true;
  }

  bool number() {
    if (at('-')) ++pos_;
    if (at('0')) {
      ++pos_;
    } else if (at_digit()) {
      while (at_digit()) ++pos_;
    } else {
      return false;
    }
    if (at('.')) {
      ++pos_;
      if (!at_digit()) return false;
      while (at_digit()) ++pos_;
    }
    if (at('e') || at('E')) {
      ++pos_;
      if (at('+') || at('-')) ++pos_;
      if (!at_digit()) return false;
      while (at_digit()) ++pos_;
    }
    return true;
  }

  std::string_view text_;
  std::size_t pos_ = 0;
  TextSlots* slots_ = nullptr;
  TextKey root_key_;
  int choice_count_ = 0;      // containers in root.choices so far
  bool hidden_ = false;       // inside an excluded tree
  bool choice_open_ = false;  // inside a choice (root.choices[*] object)
  bool block_open_ = false;   // inside root.delta / root.content_block, an object
  std::string block_field_;   // the key below it the strings belong to
  std::vector<Level> levels_;
  std::string_view key_;  // the last key read
  std::vector<std::string> fields_;
};

// WHATWG "Interpreting an event stream" over the whole input, with one difference the extractor
// documents: at the end, a pending event is dispatched rather than discarded. Blank data and
// `[DONE]` carry nothing.
Extracted reference_event_stream(std::string_view input) {
  if (input.starts_with("\xEF\xBB\xBF")) input.remove_prefix(3);
  Extracted result;
  TextSlots slots;  // the stream's texts
  std::string data;
  bool has_data = false;
  auto dispatch = [&] {
    if (!has_data) return;
    data.pop_back();  // the "\n" after the last data line
    const std::size_t first = data.find_first_not_of(kWhitespace);
    if (first != std::string::npos) {
      Extracted event = ReferenceJson::read(data, true, &slots);
      result.fields.insert(result.fields.end(), event.fields.begin(), event.fields.end());
      result.malformed = result.malformed || event.malformed;
    }
    data.clear();
    has_data = false;
  };
  std::size_t pos = 0;
  while (pos < input.size()) {
    const std::size_t line_end = std::min(input.find_first_of("\r\n", pos), input.size());
    const std::string_view line = input.substr(pos, line_end - pos);
    pos = line_end;
    if (pos < input.size()) pos += input.substr(pos, 2) == "\r\n" ? 2 : 1;
    if (line.empty()) {
      dispatch();
      continue;
    }
    const std::size_t colon = line.find(':');
    if (colon == 0) continue;  // a comment
    const std::string_view field = line.substr(0, colon);
    std::string_view value =
        colon == std::string_view::npos ? std::string_view() : line.substr(colon + 1);
    if (value.starts_with(' ')) value.remove_prefix(1);
    if (field == "data") {
      data += value;
      data += '\n';
      has_data = true;
    }
  }
  dispatch();
  return result;
}

// ---- Checks -------------------------------------------------------------------------------

Extracted run(CompletionExtractor& extractor, bool event_stream, std::span<const uint8_t> input,
              std::span<const std::size_t> cuts) {
  CheckingSink sink;
  extractor.begin(event_stream);
  std::size_t from = 0;
  for (std::size_t cut : cuts) {
    extractor.feed(input.subspan(from, cut - from), sink);
    from = cut;
  }
  extractor.feed(input.subspan(from), sink);
  extractor.finish(sink);
  return {sink.take(), extractor.malformed()};
}

Extracted check(std::span<const uint8_t> input, bool event_stream) {
  const std::string_view text(reinterpret_cast<const char*>(input.data()), input.size());
  CompletionExtractor extractor;
  const Extracted whole = run(extractor, event_stream, input, {});
  // The body's first bytes say how it is read: `{` (after whitespace) JSON, a line start of an
  // event stream as the very first byte an event stream, else the declared reading.
  bool as_stream = event_stream;
  const std::size_t first = text.find_first_not_of(kWhitespace);
  if (first != std::string_view::npos && text[first] == '{') as_stream = false;
  if (first == 0 && std::string_view("deir:").find(text[0]) != std::string_view::npos)
    as_stream = true;
  require(whole == (as_stream ? reference_event_stream(text) : ReferenceJson::read(text, false)),
          "the extractor agrees with the whole-input reference");

  // Cut points that depend on the content, so the fuzzer can steer them.
  uint32_t hash = 2166136261u;
  for (uint8_t byte : input) hash = (hash ^ byte) * 16777619u;
  const std::size_t a = hash % (input.size() + 1);
  const std::size_t b = (hash >> 13) % (input.size() + 1);
  const std::size_t one_cut[] = {a};
  const std::size_t two_cuts[] = {std::min(a, b), std::max(a, b)};
  require(run(extractor, event_stream, input, one_cut) == whole,
          "two pieces give what the whole input gives");
  require(run(extractor, event_stream, input, two_cuts) == whole,
          "three pieces give what the whole input gives");
  if (input.size() <= 512) {
    std::vector<std::size_t> every;
    for (std::size_t i = 1; i < input.size(); ++i) every.push_back(i);
    require(run(extractor, event_stream, input, every) == whole,
            "byte by byte gives what the whole input gives");
  }

  // Left in the middle of the other reading, then begun again.
  CompletionExtractor reused;
  CheckingSink ignored;
  reused.begin(!event_stream);
  reused.feed(input.subspan(0, a), ignored);
  require(run(reused, event_stream, input, {}) == whole, "begin() forgets the previous body");
  return whole;
}

}  // namespace
}  // namespace sluice

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  using namespace sluice;
  const std::span<const uint8_t> input(data, size);
  const Extracted plain = check(input, false);
  check(input, true);
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const std::size_t first = text.find_first_not_of(kWhitespace);
  const std::size_t last = text.find_last_not_of(kWhitespace);
  const bool blank_or_done =
      first == std::string_view::npos || text.substr(first, last + 1 - first) == "[DONE]";
  // (A plain body whose first byte starts an event-stream line is read as an event stream.)
  const bool stream_start =
      !text.empty() && std::string_view("deir:").find(text[0]) != std::string_view::npos;
  if (text.find_first_of("\r\n") == std::string_view::npos && !blank_or_done && !stream_start) {
    std::vector<uint8_t> event(size + 7);
    const std::string_view prefix = "data:";
    std::copy(prefix.begin(), prefix.end(), event.begin());
    std::copy(data, data + size, event.begin() + prefix.size());
    event[size + 5] = '\n';
    event[size + 6] = '\n';
    // As a stream, an index that contradicts the text before it is malformed where the plain
    // body reads on: then the stream's fields are where the plain body's begin.
    const Extracted streamed = check(event, true);
    if (streamed.malformed) {
      require(streamed.fields.size() <= plain.fields.size() &&
                  std::equal(streamed.fields.begin(), streamed.fields.end(), plain.fields.begin()),
              "one data line reads like the plain body up to where the stream fails");
    } else {
      require(streamed == plain, "one data line reads like the plain body");
    }
  }
  // Ending the stream here (write_event_end): what it writes is framing and JSON an extractor
  // reads on without a failure, and it leaves no event open.
  {
    CompletionExtractor cut;
    cut.begin(true);
    NullSink ignore;
    cut.feed(input, ignore);
    const bool was_malformed = cut.malformed();
    char end[256];
    const long length = cut.write_event_end(end);
    if (length >= 0) {
      require(length == 0 || end[length - 1] == '\n', "an event end ends a line");
      CompletionExtractor after = cut;
      after.feed({reinterpret_cast<const uint8_t*>(end), static_cast<std::size_t>(length)}, ignore);
      require(after.malformed() == was_malformed, "the event end itself is well-formed");
    }
  }
  return 0;
}
