#include "engine/tokenizer/tokenizer.h"

#include <dlfcn.h>
#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "engine/base/status_macros.h"
#include "engine/tokenizer/spm_bridge.h"
#include "engine/tokenizer/utf8.h"

// Set by engine/tokenizer/CMakeLists.txt.
#ifndef OPENELM_SPM_BRIDGE_BUILD_PATH
#error "OPENELM_SPM_BRIDGE_BUILD_PATH must be defined by the build"
#endif
#ifndef OPENELM_SPM_BRIDGE_FILE_NAME
#error "OPENELM_SPM_BRIDGE_FILE_NAME must be defined by the build"
#endif

namespace openelm {
namespace {

// The SentencePiece meta symbol for a space, U+2581 "▁".
constexpr absl::string_view kSpaceSymbol = "\xE2\x96\x81";

// Directory of the running executable, or "" when /proc is unavailable.
std::string ExecutableDir() {
  std::string path(4096, '\0');
  const ssize_t n = readlink("/proc/self/exe", path.data(), path.size());
  if (n <= 0 || static_cast<size_t>(n) >= path.size()) return "";
  path.resize(static_cast<size_t>(n));
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return "";
  return path.substr(0, slash);
}

// Finds libopenelm_spm_bridge.so and loads it into a new link-map namespace.
// Candidates, in order: next to the executable, ../lib relative to it, and
// the build-tree location. The handle is never closed: the namespace lives
// as long as the process (glibc supports only a handful of namespaces, so
// there is exactly one, shared by every Tokenizer).
absl::StatusOr<const OpenElmSpmApi*> OpenBridge() {
  const std::string file_name = OPENELM_SPM_BRIDGE_FILE_NAME;
  std::vector<std::string> candidates;
  const std::string exe_dir = ExecutableDir();
  if (!exe_dir.empty()) {
    candidates.push_back(absl::StrCat(exe_dir, "/", file_name));
    candidates.push_back(absl::StrCat(exe_dir, "/../lib/", file_name));
  }
  candidates.push_back(OPENELM_SPM_BRIDGE_BUILD_PATH);

  std::vector<std::string> attempts;
  for (const std::string& path : candidates) {
    if (access(path.c_str(), R_OK) != 0) {
      attempts.push_back(absl::StrCat(path, " (", std::strerror(errno), ")"));
      continue;
    }
    // LM_ID_NEWLM: sentencepiece and its embedded protobuf-lite get their
    // own copies of every dependency, invisible to the rest of the process.
    void* handle = dlmopen(LM_ID_NEWLM, path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) {
      const char* error = dlerror();
      attempts.push_back(absl::StrCat(
          path, " (dlmopen: ", error != nullptr ? error : "unknown error", ")"));
      continue;
    }
    dlerror();  // clear
    void* symbol = dlsym(handle, OPENELM_SPM_BRIDGE_ENTRY_POINT);
    if (symbol == nullptr) {
      const char* error = dlerror();
      attempts.push_back(absl::StrCat(
          path, " (dlsym: ", error != nullptr ? error : "symbol missing", ")"));
      dlclose(handle);
      continue;
    }
    const OpenElmSpmApi* api = reinterpret_cast<OpenElmSpmBridgeEntryFn>(symbol)();
    if (api == nullptr || api->abi_version != OPENELM_SPM_BRIDGE_ABI_VERSION ||
        api->struct_size < sizeof(OpenElmSpmApi)) {
      attempts.push_back(absl::StrCat(path, " (incompatible bridge ABI version ",
                                      api == nullptr ? 0 : api->abi_version, ", want ",
                                      OPENELM_SPM_BRIDGE_ABI_VERSION, ")"));
      dlclose(handle);
      continue;
    }
    return api;
  }
  return absl::FailedPreconditionError(
      absl::StrCat("cannot load the sentencepiece bridge module ", file_name,
                   "; tried: ", absl::StrJoin(attempts, "; ")));
}

// Loads the bridge once per process; later calls return the same result.
absl::StatusOr<const OpenElmSpmApi*> GetBridge() {
  static const absl::StatusOr<const OpenElmSpmApi*>* const bridge =
      new absl::StatusOr<const OpenElmSpmApi*>(OpenBridge());
  return *bridge;
}

// Takes ownership of a bridge-allocated buffer and releases it on scope exit.
template <typename T>
class BridgeBuffer {
 public:
  explicit BridgeBuffer(const OpenElmSpmApi* api) : api_(api) {}
  ~BridgeBuffer() { api_->free_buffer(ptr_); }
  BridgeBuffer(const BridgeBuffer&) = delete;
  BridgeBuffer& operator=(const BridgeBuffer&) = delete;

  T** slot() { return &ptr_; }  // out-parameter for a bridge call
  const T* get() const { return ptr_; }

 private:
  const OpenElmSpmApi* api_;
  T* ptr_ = nullptr;
};

std::string TakeError(const OpenElmSpmApi* api, char* error) {
  std::string message = error != nullptr ? std::string(error) : "unknown error";
  api->free_buffer(error);
  return message;
}

// Parses the byte-fallback piece "<0xNN>".
bool ParseBytePiece(absl::string_view piece, char* byte) {
  if (piece.size() != 6 || piece.substr(0, 3) != "<0x" || piece[5] != '>') {
    return false;
  }
  int value = 0;
  for (char c : piece.substr(3, 2)) {
    value <<= 4;
    if (c >= '0' && c <= '9') {
      value |= c - '0';
    } else if (c >= 'A' && c <= 'F') {
      value |= c - 'A' + 10;
    } else if (c >= 'a' && c <= 'f') {
      value |= c - 'a' + 10;
    } else {
      return false;
    }
  }
  *byte = static_cast<char>(value);
  return true;
}

// A loaded SentencePiece model plus a copy of its piece table.
//
// Owns the bridge-side model (released in the destructor). Immutable after
// Create(); every method is const and safe to call from any thread
// (SentencePieceProcessor::Encode/Decode are const and keep no scratch state).
class SentencePieceTokenizer final : public Tokenizer {
 public:
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Create(const OpenElmSpmApi* api,
                                                           const std::string& model_path);

  ~SentencePieceTokenizer() override { api_->unload(model_); }
  SentencePieceTokenizer(const SentencePieceTokenizer&) = delete;
  SentencePieceTokenizer& operator=(const SentencePieceTokenizer&) = delete;

  absl::StatusOr<std::vector<TokenId>> Encode(absl::string_view text,
                                              bool add_bos) const override;
  absl::StatusOr<std::string> Decode(absl::Span<const TokenId> ids) const override;
  std::string IdToPiece(TokenId id) const override {
    return InRange(id) ? pieces_[id] : std::string();
  }
  const std::string& PieceBytes(TokenId id) const override {
    static const std::string* const kEmpty = new std::string();
    return InRange(id) ? piece_bytes_[id] : *kEmpty;
  }
  bool IsControl(TokenId id) const override {
    return InRange(id) && types_[id] == OPENELM_SPM_PIECE_CONTROL;
  }
  int32_t vocab_size() const override { return static_cast<int32_t>(pieces_.size()); }
  TokenId bos_id() const override { return bos_id_; }
  TokenId eos_id() const override { return eos_id_; }
  int32_t max_bytes_per_token() const override { return max_bytes_per_token_; }

 private:
  SentencePieceTokenizer(const OpenElmSpmApi* api, OpenElmSpmModel* model)
      : api_(api), model_(model) {}

  bool InRange(TokenId id) const {
    return id >= 0 && static_cast<size_t>(id) < pieces_.size();
  }
  // Copies the piece table and precomputes PieceBytes for every id.
  absl::Status ReadPieceTable(const std::string& model_path);
  // Sets max_bytes_per_token_ (see Tokenizer::max_bytes_per_token).
  void FindBytesPerTokenBound();

  const OpenElmSpmApi* const api_;
  OpenElmSpmModel* const model_;          // owned
  std::vector<std::string> pieces_;       // indexed by TokenId
  std::vector<std::string> piece_bytes_;  // indexed by TokenId
  std::vector<int32_t> types_;            // OPENELM_SPM_PIECE_*, by TokenId
  TokenId bos_id_ = -1;
  TokenId eos_id_ = -1;
  int32_t max_bytes_per_token_ = 0;
};

absl::StatusOr<std::unique_ptr<Tokenizer>> SentencePieceTokenizer::Create(
    const OpenElmSpmApi* api, const std::string& model_path) {
  char* error = nullptr;
  OpenElmSpmModel* model = api->load(model_path.c_str(), &error);
  if (model == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot load tokenizer model ", model_path, ": ", TakeError(api, error)));
  }
  // From here on the model is owned by `tokenizer`.
  std::unique_ptr<SentencePieceTokenizer> tokenizer(
      new SentencePieceTokenizer(api, model));
  OPENELM_RETURN_IF_ERROR(tokenizer->ReadPieceTable(model_path));
  tokenizer->FindBytesPerTokenBound();
  return std::unique_ptr<Tokenizer>(std::move(tokenizer));
}

absl::Status SentencePieceTokenizer::ReadPieceTable(const std::string& model_path) {
  const int32_t size = api_->piece_size(model_);
  if (size <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("tokenizer model ", model_path, " has no pieces"));
  }
  bos_id_ = api_->bos_id(model_);
  eos_id_ = api_->eos_id(model_);
  pieces_.resize(size);
  piece_bytes_.resize(size);
  types_.resize(size);
  for (int32_t id = 0; id < size; ++id) {
    const char* data = nullptr;
    size_t data_size = 0;
    int32_t type = OPENELM_SPM_PIECE_NORMAL;
    if (api_->piece(model_, id, &data, &data_size, &type) != 0) {
      return absl::InternalError(absl::StrCat("bridge has no piece ", id));
    }
    pieces_[id].assign(data, data_size);
    types_[id] = type;
    std::string& bytes = piece_bytes_[id];
    switch (type) {
      case OPENELM_SPM_PIECE_CONTROL:
        break;  // no text
      case OPENELM_SPM_PIECE_BYTE: {
        char byte = 0;
        if (!ParseBytePiece(pieces_[id], &byte)) {
          return absl::InvalidArgumentError(
              absl::StrCat("tokenizer model ", model_path, ": byte piece ", id,
                           " is not of the form <0xNN>: ", pieces_[id]));
        }
        bytes.assign(1, byte);
        break;
      }
      case OPENELM_SPM_PIECE_UNKNOWN: {
        // Whatever SentencePiece prints for <unk> (by default " \u2047 ").
        OPENELM_ASSIGN_OR_RETURN(bytes, Decode(absl::MakeConstSpan(&id, 1)));
        break;
      }
      default:
        bytes = absl::StrReplaceAll(pieces_[id], {{kSpaceSymbol, " "}});
        break;
    }
  }
  return absl::OkStatus();
}

void SentencePieceTokenizer::FindBytesPerTokenBound() {
  max_bytes_per_token_ = 0;
  // Every byte value needs its own fallback piece; otherwise text the
  // vocabulary lacks becomes one <unk> of any length.
  int32_t byte_pieces = 0;
  size_t longest = 1;
  for (size_t id = 0; id < pieces_.size(); ++id) {
    if (types_[id] == OPENELM_SPM_PIECE_BYTE) ++byte_pieces;
    if (types_[id] == OPENELM_SPM_PIECE_NORMAL) {
      longest = std::max(longest, piece_bytes_[id].size());
    }
  }
  if (byte_pieces != 256) return;
  // A normalizer that folds (NFKC), drops (control characters) or squeezes
  // (repeated spaces) text lets one token cover more input than its piece
  // shows. The probe holds one of each; it must come back byte for byte
  // (after the dummy-prefix space SentencePiece may add).
  static constexpr absl::string_view kProbe =
      "\xEF\xBC\xA1"  // FULLWIDTH LATIN CAPITAL LETTER A
      "\xEF\xAC\x81"  // LATIN SMALL LIGATURE FI
      "\xE3\x8E\x8F"  // SQUARE KG
      "  x\t\ty\x01"  // runs of blanks, a control character
      "\xC3\xA9"
      "e\xCC\x81 ";  // composed and decomposed e-acute
  absl::StatusOr<std::vector<TokenId>> ids = Encode(kProbe, /*add_bos=*/false);
  if (!ids.ok()) return;
  std::string back;
  for (TokenId id : *ids) back += PieceBytes(id);
  if (back != kProbe && back != absl::StrCat(" ", kProbe)) return;
  max_bytes_per_token_ = static_cast<int32_t>(longest);
}

absl::StatusOr<std::vector<TokenId>> SentencePieceTokenizer::Encode(
    absl::string_view text, bool add_bos) const {
  if (!utf8::IsValid(text)) {
    return absl::InvalidArgumentError("text to encode is not valid UTF-8");
  }
  if (add_bos && bos_id_ < 0) {
    return absl::FailedPreconditionError("tokenizer model has no BOS piece");
  }
  BridgeBuffer<int32_t> ids(api_);
  size_t num_ids = 0;
  char* error = nullptr;
  if (api_->encode(model_, text.data(), text.size(), ids.slot(), &num_ids, &error) != 0) {
    return absl::InternalError(
        absl::StrCat("sentencepiece encode failed: ", TakeError(api_, error)));
  }
  std::vector<TokenId> out;
  out.reserve(num_ids + (add_bos ? 1 : 0));
  if (add_bos) out.push_back(bos_id_);
  const int32_t* begin = ids.get();
  if (num_ids > 0) out.insert(out.end(), begin, begin + num_ids);
  return out;
}

absl::StatusOr<std::string> SentencePieceTokenizer::Decode(
    absl::Span<const TokenId> ids) const {
  for (TokenId id : ids) {
    if (!InRange(id)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "token id ", id, " is outside the vocabulary [0, ", pieces_.size(), ")"));
    }
  }
  static_assert(sizeof(TokenId) == sizeof(int32_t));
  BridgeBuffer<char> text(api_);
  size_t text_size = 0;
  char* error = nullptr;
  if (api_->decode(model_, ids.data(), ids.size(), text.slot(), &text_size, &error) !=
      0) {
    return absl::InternalError(
        absl::StrCat("sentencepiece decode failed: ", TakeError(api_, error)));
  }
  return std::string(text.get(), text_size);
}

}  // namespace

int64_t MinTokensForBytes(const Tokenizer& tokenizer, int64_t num_bytes) {
  const int64_t per_token = tokenizer.max_bytes_per_token();
  if (per_token <= 0 || num_bytes <= 0) return 0;
  return (num_bytes + per_token - 1) / per_token;
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::Load(
    const std::string& model_path) {
  struct stat info;
  if (stat(model_path.c_str(), &info) != 0) {
    const int error = errno;
    if (error == ENOENT || error == ENOTDIR) {
      return absl::NotFoundError(absl::StrCat("tokenizer model not found: ", model_path));
    }
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot read tokenizer model ", model_path, ": ", std::strerror(error)));
  }
  if (!S_ISREG(info.st_mode)) {
    return absl::InvalidArgumentError(
        absl::StrCat("tokenizer model is not a regular file: ", model_path));
  }
  OPENELM_ASSIGN_OR_RETURN(const OpenElmSpmApi* api, GetBridge());
  return SentencePieceTokenizer::Create(api, model_path);
}

}  // namespace openelm
