#include "tests/testing/temp_dir.h"

#include <stdlib.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <system_error>
#include <utility>

namespace nbrl::testutil {
namespace {

bool KeepTestTmp() {
  const char* keep = std::getenv("NBRL_KEEP_TEST_TMP");
  return keep != nullptr && std::string(keep) == "1";
}

}  // namespace

TempDir::TempDir(const std::string& prefix) {
  std::error_code ec;
  std::filesystem::path base = std::filesystem::temp_directory_path(ec);
  if (ec) base = "/tmp";
  std::string pattern = (base / (prefix + "XXXXXX")).string();
  if (::mkdtemp(pattern.data()) == nullptr) {
    std::fprintf(stderr, "testutil::TempDir: mkdtemp(%s): %s\n", pattern.c_str(),
                 std::strerror(errno));
    std::abort();
  }
  path_ = std::move(pattern);
}

TempDir::~TempDir() { Remove(); }

TempDir::TempDir(TempDir&& other) noexcept : path_(std::move(other.path_)) {
  other.path_.clear();
}

TempDir& TempDir::operator=(TempDir&& other) noexcept {
  if (this != &other) {
    Remove();
    path_ = std::move(other.path_);
    other.path_.clear();
  }
  return *this;
}

void TempDir::Remove() {
  if (path_.empty()) return;
  if (KeepTestTmp()) {
    std::fprintf(stderr, "testutil::TempDir: kept %s (NBRL_KEEP_TEST_TMP=1)\n",
                 path_.c_str());
  } else {
    std::error_code ignored;  // a test's leftovers must not fail the test
    std::filesystem::remove_all(path_, ignored);
  }
  path_.clear();
}

}  // namespace nbrl::testutil
