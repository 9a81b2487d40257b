// The sentencepiece side of the tokenizer. This is the only translation unit
// in the project that includes sentencepiece_processor.h; it must not include
// any Abseil or gRPC header (sentencepiece 0.1.97 declares its own
// `namespace absl` shim, which clashes with the real Abseil).
//
// Built as a MODULE library and loaded by tokenizer.cc with
// dlmopen(LM_ID_NEWLM); see spm_bridge.h for the boundary rules.

#include "engine/tokenizer/spm_bridge.h"

#include <sentencepiece_processor.h>
#include <stdlib.h>
#include <string.h>

#include <string>
#include <string_view>
#include <vector>

struct OpenElmSpmModel {
  sentencepiece::SentencePieceProcessor processor;
};

namespace {

// Copies `message` into a malloc'ed NUL-terminated buffer owned by the caller
// (to be released with BridgeFreeBuffer).
char* CopyMessage(const std::string& message) {
  char* out = static_cast<char*>(malloc(message.size() + 1));
  if (out == nullptr) return nullptr;
  memcpy(out, message.data(), message.size());
  out[message.size()] = '\0';
  return out;
}

void SetError(char** error, const std::string& message) {
  if (error != nullptr) *error = CopyMessage(message);
}

OpenElmSpmModel* BridgeLoad(const char* path, char** error) {
  if (path == nullptr) {
    SetError(error, "null model path");
    return nullptr;
  }
  OpenElmSpmModel* model = new OpenElmSpmModel();
  const sentencepiece::util::Status status = model->processor.Load(path);
  if (!status.ok()) {
    SetError(error, status.ToString());
    delete model;
    return nullptr;
  }
  return model;
}

void BridgeUnload(OpenElmSpmModel* model) { delete model; }

int32_t BridgePieceSize(const OpenElmSpmModel* model) {
  return model->processor.GetPieceSize();
}

int32_t BridgeBosId(const OpenElmSpmModel* model) { return model->processor.bos_id(); }

int32_t BridgeEosId(const OpenElmSpmModel* model) { return model->processor.eos_id(); }

int32_t BridgeUnkId(const OpenElmSpmModel* model) { return model->processor.unk_id(); }

int32_t BridgePiece(const OpenElmSpmModel* model, int32_t id, const char** data,
                    size_t* size, int32_t* type) {
  const sentencepiece::SentencePieceProcessor& sp = model->processor;
  if (id < 0 || id >= sp.GetPieceSize()) return -1;
  const std::string& piece = sp.IdToPiece(id);
  *data = piece.data();
  *size = piece.size();
  if (sp.IsControl(id)) {
    *type = OPENELM_SPM_PIECE_CONTROL;
  } else if (sp.IsUnknown(id)) {
    *type = OPENELM_SPM_PIECE_UNKNOWN;
  } else if (sp.IsByte(id)) {
    *type = OPENELM_SPM_PIECE_BYTE;
  } else if (sp.IsUnused(id)) {
    *type = OPENELM_SPM_PIECE_UNUSED;
  } else {
    *type = OPENELM_SPM_PIECE_NORMAL;
  }
  return 0;
}

int32_t BridgeEncode(const OpenElmSpmModel* model, const char* text, size_t text_size,
                     int32_t** ids, size_t* num_ids, char** error) {
  *ids = nullptr;
  *num_ids = 0;
  std::vector<int> pieces;
  // SentencePieceProcessor::Encode is const and safe to call concurrently.
  const sentencepiece::util::Status status = model->processor.Encode(
      std::string_view(text == nullptr ? "" : text, text_size), &pieces);
  if (!status.ok()) {
    SetError(error, status.ToString());
    return -1;
  }
  if (pieces.empty()) return 0;
  int32_t* out = static_cast<int32_t*>(malloc(pieces.size() * sizeof(int32_t)));
  if (out == nullptr) {
    SetError(error, "out of memory");
    return -1;
  }
  for (size_t i = 0; i < pieces.size(); ++i) out[i] = pieces[i];
  *ids = out;
  *num_ids = pieces.size();
  return 0;
}

int32_t BridgeDecode(const OpenElmSpmModel* model, const int32_t* ids, size_t num_ids,
                     char** text, size_t* text_size, char** error) {
  *text = nullptr;
  *text_size = 0;
  const std::vector<int> pieces(ids, ids + num_ids);
  std::string decoded;
  const sentencepiece::util::Status status = model->processor.Decode(pieces, &decoded);
  if (!status.ok()) {
    SetError(error, status.ToString());
    return -1;
  }
  // Always hand out a buffer (at least one byte) so the caller can tell
  // success from failure without looking at the size.
  char* out = static_cast<char*>(malloc(decoded.size() + 1));
  if (out == nullptr) {
    SetError(error, "out of memory");
    return -1;
  }
  memcpy(out, decoded.data(), decoded.size());
  out[decoded.size()] = '\0';
  *text = out;
  *text_size = decoded.size();
  return 0;
}

void BridgeFreeBuffer(void* buffer) { free(buffer); }

const OpenElmSpmApi kApi = {
    OPENELM_SPM_BRIDGE_ABI_VERSION,
    sizeof(OpenElmSpmApi),
    &BridgeLoad,
    &BridgeUnload,
    &BridgePieceSize,
    &BridgeBosId,
    &BridgeEosId,
    &BridgeUnkId,
    &BridgePiece,
    &BridgeEncode,
    &BridgeDecode,
    &BridgeFreeBuffer,
};

}  // namespace

extern "C" __attribute__((visibility("default"))) const OpenElmSpmApi*
openelm_spm_bridge_api(void) {
  return &kApi;
}
