// Errors of the codec core. C++ never aborts: every failure becomes an ov2::Error that the bindings turn into
// the matching ov2_tokenizer.errors exception. Each error names the source and the cause.
#pragma once
#include <stdexcept>
#include <string>

namespace ov2 {

enum class ErrorKind { Open, NoVideoStream, UnsupportedCodec, Corrupt, Config, Timeout };

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, std::string source, std::string cause)
      : std::runtime_error(source + ": " + cause), kind_(kind), source_(std::move(source)), cause_(std::move(cause)) {}
  ErrorKind kind() const { return kind_; }
  const std::string& source() const { return source_; }
  const std::string& cause() const { return cause_; }

 private:
  ErrorKind kind_;
  std::string source_;
  std::string cause_;
};

}  // namespace ov2
