// A test's scratch directory that cleans up after itself, also when the test
// fails: keep it as a local, a fixture member or a suite's static, and it is
// removed with everything in it when it goes away.
//
//   testutil::TempDir tmp("nbrl-ckpt-");
//   WriteFile(tmp.path() + "/config.json", ...);
//
// It lives under std::filesystem::temp_directory_path() ($TMPDIR, else /tmp), and
// its name is the prefix and 6 random characters: keep prefixes short where a unix
// socket goes inside (sun_path holds 107 bytes). NBRL_KEEP_TEST_TMP=1 keeps every
// such directory and prints its path to stderr, for debugging a failure.
#ifndef NBRL_TESTS_TESTING_TEMP_DIR_H_
#define NBRL_TESTS_TESTING_TEMP_DIR_H_

#include <string>

namespace nbrl::testutil {

class TempDir {
 public:
  // Creates the directory; aborts with a message when it cannot (a test cannot
  // go on without its scratch space).
  explicit TempDir(const std::string& prefix = "nbrl-test-");
  ~TempDir();

  TempDir(TempDir&& other) noexcept;
  TempDir& operator=(TempDir&& other) noexcept;
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  // Absolute path, no trailing slash.
  const std::string& path() const { return path_; }

 private:
  void Remove();

  std::string path_;  // empty once moved from
};

}  // namespace nbrl::testutil

#endif  // NBRL_TESTS_TESTING_TEMP_DIR_H_
