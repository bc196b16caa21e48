// Runs a libFuzzer harness over its seed corpus without libFuzzer, so every test run (gcc,
// ASan/UBSan build included) replays the seeds and any crash reproducer added to the corpus:
//   corpus_runner DIR_OR_FILE...
// The real fuzzer: see tests/fuzz/README.md.
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

int main(int argc, char** argv) {
  std::size_t inputs = 0;
  for (int i = 1; i < argc; ++i) {
    std::vector<std::filesystem::path> files;
    if (std::filesystem::is_directory(argv[i])) {
      for (const auto& entry : std::filesystem::directory_iterator(argv[i]))
        files.push_back(entry.path());
    } else {
      files.emplace_back(argv[i]);
    }
    for (const auto& file : files) {
      std::ifstream in(file, std::ios::binary);
      const std::vector<uint8_t> bytes{std::istreambuf_iterator<char>(in), {}};
      LLVMFuzzerTestOneInput(bytes.data(), bytes.size());
      ++inputs;
    }
  }
  std::printf("corpus_runner: %zu inputs, no invariant violated\n", inputs);
  return inputs > 0 ? 0 : 1;
}
