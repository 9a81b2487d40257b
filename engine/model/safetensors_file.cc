#include "engine/model/safetensors_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/base/json.h"
#include "engine/base/status_macros.h"

namespace openelm {

// A read-only private mapping of a whole file.
struct FileMapping {
  FileMapping() = default;
  FileMapping(const FileMapping&) = delete;
  FileMapping& operator=(const FileMapping&) = delete;
  ~FileMapping() {
    if (data != nullptr) munmap(const_cast<char*>(data), size);
  }
  std::string path;
  const char* data = nullptr;  // nullptr for an empty file
  size_t size = 0;
};

namespace {

constexpr int64_t kMaxHeaderBytes = int64_t{100} << 20;  // 100 MiB

// Maps `path` read-only. An empty file gets no mapping.
absl::StatusOr<std::unique_ptr<FileMapping>> MapFile(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT)
      return absl::NotFoundError(absl::StrCat("'", path, "' does not exist"));
    return absl::PermissionDeniedError(
        absl::StrCat("cannot open '", path, "': ", std::strerror(errno)));
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    const int err = errno;
    close(fd);
    return absl::InternalError(
        absl::StrCat("cannot stat '", path, "': ", std::strerror(err)));
  }
  auto m = std::make_unique<FileMapping>();
  m->path = path;
  m->size = static_cast<size_t>(st.st_size);
  if (m->size > 0) {
    void* p = mmap(nullptr, m->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      const int err = errno;
      close(fd);
      return absl::ResourceExhaustedError(
          absl::StrCat("cannot mmap '", path, "': ", std::strerror(err)));
    }
    m->data = static_cast<const char*>(p);
  }
  close(fd);  // the mapping keeps the file alive
  return m;
}

absl::StatusOr<DType> ParseDType(absl::string_view name) {
  if (name == "F32") return DType::kF32;
  if (name == "F16") return DType::kF16;
  if (name == "BF16") return DType::kBF16;
  return absl::InvalidArgumentError("unsupported dtype");
}

// One tensor entry of a safetensors header before it is bound to memory.
struct RawEntry {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  int64_t begin = 0;
  int64_t end = 0;
};

// Parses and validates one tensor entry of a safetensors header.
absl::StatusOr<RawEntry> ParseEntry(const std::string& file, const std::string& name,
                                    const nlohmann::json& v) {
  const nlohmann::json* dtype = JsonFind(v, "dtype");
  const nlohmann::json* shape = JsonFind(v, "shape");
  const nlohmann::json* offsets = JsonFind(v, "data_offsets");
  if (!v.is_object() || dtype == nullptr || shape == nullptr || offsets == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("safetensors file '", file, "': entry for tensor '", name,
                     "' must be an object with dtype, shape and data_offsets"));
  }
  RawEntry e;
  e.name = name;
  absl::StatusOr<DType> parsed_dtype = dtype->is_string()
                                           ? ParseDType(dtype->get<std::string>())
                                           : absl::InvalidArgumentError("not a string");
  if (!parsed_dtype.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor '", name, "' in '", file, "' has unsupported dtype ",
                     JsonDump(*dtype), " (supported: F32, F16, BF16)"));
  }
  e.dtype = *parsed_dtype;
  bool shape_ok = shape->is_array() && shape->size() <= 8;
  if (shape_ok) {
    for (const nlohmann::json& d : *shape) {
      const std::optional<int64_t> n = JsonInt64(d);
      if (!n.has_value() || *n < 0 || *n > (int64_t{1} << 40)) {
        shape_ok = false;
        break;
      }
      e.shape.push_back(*n);
    }
  }
  if (!shape_ok) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor '", name, "' in '", file, "' has invalid shape ", JsonDump(*shape),
        ": expected a list of at most 8 non-negative integers"));
  }
  // Exact integers only: 1.0, 1e3 and values beyond int64 are refused.
  std::optional<int64_t> begin;
  std::optional<int64_t> end;
  if (offsets->is_array() && offsets->size() == 2) {
    begin = JsonInt64((*offsets)[0]);
    end = JsonInt64((*offsets)[1]);
  }
  if (!begin.has_value() || !end.has_value() || *begin < 0 || *begin > *end) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor '", name, "' in '", file, "' has invalid data_offsets ",
        JsonDump(*offsets), ": expected [begin, end] with 0 <= begin <= end"));
  }
  e.begin = *begin;
  e.end = *end;
  // Byte size must equal prod(shape) * element size (no overflow possible:
  // at most 8 dims of <= 2^40 would overflow, so check as we go).
  int64_t want = DTypeBytes(e.dtype);
  bool overflow = false;
  for (int64_t d : e.shape) overflow |= __builtin_mul_overflow(want, d, &want);
  if (overflow || want != e.end - e.begin) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor '", name, "' in '", file, "' has data_offsets [", e.begin, ", ", e.end,
        "] (", e.end - e.begin, " bytes) but shape ", ShapeString(e.shape), " of ",
        DTypeName(e.dtype), " needs ",
        overflow ? "an impossible number of" : absl::StrCat(want), " bytes"));
  }
  return e;
}

// Validates one safetensors file and returns views of its tensors.
absl::StatusOr<std::vector<TensorView>> ParseSafetensors(const FileMapping& m) {
  const std::string& file = m.path;
  if (m.size < 8) {
    return absl::InvalidArgumentError(
        absl::StrCat("safetensors file '", file, "' is truncated: ", m.size,
                     " bytes, too short for the 8-byte header length"));
  }
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i)
    header_len = (header_len << 8) | static_cast<uint8_t>(m.data[i]);
  if (header_len > static_cast<uint64_t>(kMaxHeaderBytes)) {
    return absl::InvalidArgumentError(absl::StrCat("safetensors file '", file,
                                                   "': header length ", header_len,
                                                   " exceeds the 100 MiB limit"));
  }
  if (header_len > m.size - 8) {
    return absl::InvalidArgumentError(
        absl::StrCat("safetensors file '", file, "': header length ", header_len,
                     " runs past the end of the file (", m.size, " bytes)"));
  }
  absl::StatusOr<nlohmann::json> header =
      ParseJson(absl::string_view(m.data + 8, header_len));
  if (!header.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("safetensors file '", file,
                     "': invalid header JSON: ", header.status().message()));
  }
  if (!header->is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat("safetensors file '", file, "': header must be a JSON object"));
  }
  std::vector<RawEntry> entries;
  for (const auto& [name, v] : header->items()) {
    if (name == "__metadata__") {
      if (!v.is_object()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "safetensors file '", file, "': __metadata__ must be an object"));
      }
      continue;
    }
    OPENELM_ASSIGN_OR_RETURN(RawEntry e, ParseEntry(file, name, v));
    entries.push_back(std::move(e));
  }

  // Overlaps: after sorting by start, each non-empty range must begin at or
  // after the end of every earlier one.
  std::vector<const RawEntry*> by_offset;
  for (const RawEntry& e : entries) by_offset.push_back(&e);
  std::sort(by_offset.begin(), by_offset.end(), [](const RawEntry* a, const RawEntry* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->name < b->name;
  });
  const RawEntry* furthest = nullptr;  // the entry reaching furthest so far
  bool contiguous = true;              // ranges tile [0, max_end) with no gaps
  int64_t max_end = 0;
  for (const RawEntry* e : by_offset) {
    if (e->begin == e->end) continue;  // empty tensors occupy no bytes
    if (furthest != nullptr && e->begin < furthest->end) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensors '", furthest->name, "' [", furthest->begin, ", ",
                       furthest->end, ") and '", e->name, "' [", e->begin, ", ", e->end,
                       ") overlap in '", file, "'"));
    }
    if (e->begin != max_end) contiguous = false;
    if (furthest == nullptr || e->end > furthest->end) furthest = e;
    max_end = std::max(max_end, e->end);
  }

  const int64_t data_size = static_cast<int64_t>(m.size - 8 - header_len);
  if (max_end > data_size) {
    if (contiguous) {
      return absl::InvalidArgumentError(absl::StrCat(
          "safetensors file '", file, "' is truncated: its tensors need ", max_end,
          " bytes of data but only ", data_size, " bytes follow the header"));
    }
    for (const RawEntry* e : by_offset) {
      if (e->end > data_size) {
        return absl::InvalidArgumentError(absl::StrCat(
            "tensor '", e->name, "' in '", file, "' has data_offsets [", e->begin, ", ",
            e->end, "] outside the data area of ", data_size, " bytes"));
      }
    }
  }

  const char* data = m.data + 8 + header_len;
  std::vector<TensorView> views;
  for (RawEntry& e : entries) {
    TensorView t;
    t.name = std::move(e.name);
    t.file = file;
    t.dtype = e.dtype;
    t.shape = std::move(e.shape);
    t.data = data + e.begin;
    t.num_bytes = e.end - e.begin;
    views.push_back(std::move(t));
  }
  return views;
}

}  // namespace

SafetensorsFile::~SafetensorsFile() = default;

const std::string& SafetensorsFile::path() const { return mapping_->path; }

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(
    const std::string& path) {
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  OPENELM_ASSIGN_OR_RETURN(file->mapping_, MapFile(path));
  OPENELM_ASSIGN_OR_RETURN(file->tensors_, ParseSafetensors(*file->mapping_));
  return file;
}

}  // namespace openelm
