// The whole-field canonicalisation reference shared by the canonicaliser's unit test and its
// fuzz harness: built straight from the libraries — utf8proc NFKD → ICU Cf / Variation_Selector
// removal and confusable skeletons → utf8proc NFC → White_Space collapse — and sharing no code
// with the streaming implementation in src/core/canonicalizer.cpp.
#pragma once

#include <unicode/uchar.h>
#include <unicode/uspoof.h>
#include <unicode/utf16.h>
#include <utf8proc.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <string>
#include <string_view>

namespace sluice::reference {

inline std::string utf8(char32_t cp) {
  utf8proc_uint8_t bytes[4];
  const auto n = utf8proc_encode_char(static_cast<utf8proc_int32_t>(cp), bytes);
  return std::string(reinterpret_cast<const char*>(bytes), static_cast<std::size_t>(n));
}

class Reference {
 public:
  Reference() {
    UErrorCode status = U_ZERO_ERROR;
    spoof_ = uspoof_open(&status);
    if (U_FAILURE(status)) std::abort();
    for (char32_t a = 0x21; a < 0x7f; ++a) ascii_by_skeleton_[skeleton(a)].push_back(char(a));
  }
  ~Reference() { uspoof_close(spoof_); }

  std::string canonical(const std::string& field) const {
    utf8proc_uint8_t* nfkd = nullptr;
    const auto n = utf8proc_map(
        reinterpret_cast<const utf8proc_uint8_t*>(field.data()),
        static_cast<utf8proc_ssize_t>(field.size()), &nfkd,
        static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPAT | UTF8PROC_DECOMPOSE));
    if (n < 0) std::abort();
    std::string filtered;
    for (utf8proc_ssize_t i = 0; i < n;) {
      utf8proc_int32_t cp;
      i += utf8proc_iterate(nfkd + i, n - i, &cp);
      if (u_hasBinaryProperty(cp, UCHAR_WHITE_SPACE)) {
        filtered += utf8(static_cast<char32_t>(cp));
      } else if (u_charType(cp) == U_FORMAT_CHAR ||
                 u_hasBinaryProperty(cp, UCHAR_VARIATION_SELECTOR)) {
        continue;
      } else if (cp >= 0x80 && utf8proc_get_property(cp)->combining_class == 0 &&
                 !skeleton(static_cast<char32_t>(cp)).empty()) {
        filtered += lookalike(static_cast<char32_t>(cp));
      } else {
        filtered += utf8(static_cast<char32_t>(cp));
      }
    }
    std::free(nfkd);
    const std::string composed = nfc(filtered);
    std::string out;
    bool pending = false;
    for (std::size_t i = 0; i < composed.size();) {
      utf8proc_int32_t cp;
      const auto len =
          utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(composed.data()) + i,
                           static_cast<utf8proc_ssize_t>(composed.size() - i), &cp);
      if (u_hasBinaryProperty(cp, UCHAR_WHITE_SPACE)) {
        pending = !out.empty();
      } else {
        if (pending) out += ' ';
        pending = false;
        out += composed.substr(i, static_cast<std::size_t>(len));
      }
      i += static_cast<std::size_t>(len);
    }
    return out;
  }

 private:
  // utf8proc NFC (utf8proc_map, which unlike utf8proc_NFC does not stop at NUL) piece by piece
  // between U+11A7 jamo: utf8proc before 2.11 composes an LV syllable with U+11A7, which is no
  // trailing consonant, and drops it (JuliaStrings/utf8proc#317). U+11A7 has ccc 0 and composes
  // with nothing, so composing the pieces apart is NFC of the whole.
  static std::string nfc(const std::string& text) {
    static const std::string kJamo11A7 = "\xE1\x86\xA7";
    std::string out;
    for (std::size_t from = 0;;) {
      const std::size_t at = std::min(text.find(kJamo11A7, from), text.size());
      utf8proc_uint8_t* composed = nullptr;
      const auto n =
          utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data() + from),
                       static_cast<utf8proc_ssize_t>(at - from), &composed,
                       static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
      if (n < 0) std::abort();
      out.append(reinterpret_cast<const char*>(composed), static_cast<std::size_t>(n));
      std::free(composed);
      if (at == text.size()) return out;
      out += kJamo11A7;
      from = at + kJamo11A7.size();
    }
  }

  // The UTS #39 skeleton if it is all ASCII, else empty.
  std::string skeleton(char32_t cp) const {
    UChar in[2];
    int32_t in_length = 0;
    U16_APPEND_UNSAFE(in, in_length, static_cast<UChar32>(cp));
    UChar out[64];
    UErrorCode status = U_ZERO_ERROR;
    const int32_t n = uspoof_getSkeleton(spoof_, 0, in, in_length, out, 64, &status);
    std::string s;
    for (int32_t i = 0; i < n; ++i) {
      if (out[i] >= 0x80) return {};
      s += static_cast<char>(out[i]);
    }
    return s;
  }
  std::string lookalike(char32_t cp) const {
    const std::string s = skeleton(cp);
    auto it = ascii_by_skeleton_.find(s);
    if (it == ascii_by_skeleton_.end()) return s;
    if (it->second.size() == 1) return it->second;
    const int8_t type = u_charType(static_cast<UChar32>(cp));
    for (char c : it->second) {
      if ((type == U_UPPERCASE_LETTER || type == U_TITLECASE_LETTER) && std::isupper(c)) return {c};
      if (type == U_LOWERCASE_LETTER && std::islower(c)) return {c};
      if ((type == U_DECIMAL_DIGIT_NUMBER || type == U_LETTER_NUMBER || type == U_OTHER_NUMBER) &&
          std::isdigit(c)) {
        return {c};
      }
    }
    return s;
  }

  USpoofChecker* spoof_ = nullptr;
  std::map<std::string, std::string> ascii_by_skeleton_;
};

}  // namespace sluice::reference
