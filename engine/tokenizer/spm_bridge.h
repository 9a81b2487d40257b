#ifndef OPENELM_ENGINE_TOKENIZER_SPM_BRIDGE_H_
#define OPENELM_ENGINE_TOKENIZER_SPM_BRIDGE_H_

// C ABI of libopenelm_spm_bridge.so, the only code that touches
// sentencepiece. tokenizer.cc loads the module with dlmopen(LM_ID_NEWLM) so
// that sentencepiece and the protobuf-lite it embeds live in their own
// link-map namespace, away from the libprotobuf used by gRPC.
//
// Rules for everything declared here:
//   * Only plain C data crosses the boundary (ints, byte buffers).
//   * Buffers returned through `char**` / `int32_t**` out-parameters are
//     allocated by the bridge and must be released with `free_buffer` (each
//     namespace has its own heap).
//   * Pointers returned by `piece` point into the model and stay valid until
//     `unload`.
//   * All functions that take a `const OpenElmSpmModel*` may be called
//     concurrently from several threads.
//
// This header is plain C: no Abseil, no sentencepiece, no C++ library types.

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// Bumped whenever OpenElmSpmApi changes incompatibly.
#define OPENELM_SPM_BRIDGE_ABI_VERSION 1

// Name of the single exported entry point (for dlsym).
#define OPENELM_SPM_BRIDGE_ENTRY_POINT "openelm_spm_bridge_api"

// Piece types reported by OpenElmSpmApi::piece.
enum {
  OPENELM_SPM_PIECE_NORMAL = 0,
  OPENELM_SPM_PIECE_UNKNOWN = 1,
  OPENELM_SPM_PIECE_CONTROL = 2,
  OPENELM_SPM_PIECE_BYTE = 3,
  OPENELM_SPM_PIECE_UNUSED = 4,
};

typedef struct OpenElmSpmModel OpenElmSpmModel;  // opaque, owned by the bridge

typedef struct OpenElmSpmApi {
  uint32_t abi_version;  // OPENELM_SPM_BRIDGE_ABI_VERSION
  uint32_t struct_size;  // sizeof(OpenElmSpmApi) as compiled into the bridge

  // Loads a SentencePiece model file. Returns null on failure and sets
  // *error to a bridge-allocated, NUL-terminated message.
  OpenElmSpmModel* (*load)(const char* path, char** error);
  void (*unload)(OpenElmSpmModel* model);

  int32_t (*piece_size)(const OpenElmSpmModel* model);
  // Special ids; -1 when the model has none.
  int32_t (*bos_id)(const OpenElmSpmModel* model);
  int32_t (*eos_id)(const OpenElmSpmModel* model);
  int32_t (*unk_id)(const OpenElmSpmModel* model);

  // Piece string and type of `id` (0 <= id < piece_size). Returns 0 on
  // success, -1 when `id` is out of range.
  int32_t (*piece)(const OpenElmSpmModel* model, int32_t id, const char** data,
                   size_t* size, int32_t* type);

  // Encodes `text` (no BOS/EOS added). Returns 0 and a bridge-allocated id
  // array (possibly null when *num_ids == 0), or -1 and *error.
  int32_t (*encode)(const OpenElmSpmModel* model, const char* text, size_t text_size,
                    int32_t** ids, size_t* num_ids, char** error);

  // Decodes ids to text the way SentencePiece does for a whole sequence.
  // Returns 0 and a bridge-allocated buffer (*text, *text_size bytes, not
  // NUL-terminated), or -1 and *error.
  int32_t (*decode)(const OpenElmSpmModel* model, const int32_t* ids, size_t num_ids,
                    char** text, size_t* text_size, char** error);

  // Releases any buffer the functions above returned. Null is a no-op.
  void (*free_buffer)(void* buffer);
} OpenElmSpmApi;

// The exported entry point. Returns a pointer to a static table.
typedef const OpenElmSpmApi* (*OpenElmSpmBridgeEntryFn)(void);
const OpenElmSpmApi* openelm_spm_bridge_api(void);

#ifdef __cplusplus
}  // extern "C"
#endif

#endif  // OPENELM_ENGINE_TOKENIZER_SPM_BRIDGE_H_
