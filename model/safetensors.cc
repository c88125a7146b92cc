#include "model/safetensors.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "base/strict_json.h"

namespace tandem::model {
namespace {

constexpr uint64_t kMaxHeader = uint64_t{100} << 20;

absl::Status Corrupt(absl::string_view what) { return absl::DataLossError(absl::StrCat("safetensors: ", what)); }

bool LittleEndianHost() {
  const uint16_t one = 1;
  uint8_t b;
  std::memcpy(&b, &one, 1);
  return b == 1;
}

absl::StatusOr<DType> ParseDType(const std::string& name, const std::string& s) {
  if (s == "F32") return DType::kF32;
  if (s == "BF16") return DType::kBF16;
  return Corrupt(absl::StrCat("tensor '", name, "': dtype: expected F32 or BF16, got '", s, "'"));
}

}  // namespace

const Tensor* SafetensorsFile::Find(absl::string_view name) const {
  for (const auto& [n, t] : tensors) {
    if (n == name) return &t;
  }
  return nullptr;
}

absl::StatusOr<std::string> SerializeSafetensors(const std::vector<std::pair<std::string, Tensor>>& tensors,
                                                 const std::map<std::string, std::string>& metadata) {
  if (!LittleEndianHost()) return absl::UnimplementedError("safetensors: big-endian host");
  json::Json header = json::Json::object();
  if (!metadata.empty()) {
    json::Json meta = json::Json::object();
    for (const auto& [k, v] : metadata) meta[k] = v;
    header["__metadata__"] = std::move(meta);
  }
  uint64_t offset = 0;
  std::vector<std::string> seen;
  for (const auto& [name, t] : tensors) {
    if (name.empty() || name == "__metadata__") {
      return absl::InvalidArgumentError(
          absl::StrCat("safetensors: tensor name: expected a non-reserved name, got '", name, "'"));
    }
    if (header.contains(name)) {
      return absl::InvalidArgumentError(absl::StrCat("safetensors: tensor '", name, "': duplicate name"));
    }
    if (!t.is_host()) {
      return absl::InvalidArgumentError(absl::StrCat("safetensors: tensor '", name, "': expected host memory"));
    }
    header[name] = {{"dtype", t.dtype() == DType::kF32 ? "F32" : "BF16"},
                    {"shape", t.shape()},
                    {"data_offsets", {offset, offset + t.bytes()}}};
    offset += t.bytes();
  }
  absl::StatusOr<std::string> dumped = json::Dump(header);
  if (!dumped.ok()) return dumped.status();
  std::string text = *std::move(dumped);
  text.append((8 - text.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  const uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  out += text;
  out.reserve(out.size() + offset);
  for (const auto& [name, t] : tensors) out.append(static_cast<const char*>(t.raw()), t.bytes());
  return out;
}

absl::StatusOr<SafetensorsFile> ParseSafetensors(absl::string_view bytes) {
  if (!LittleEndianHost()) return absl::UnimplementedError("safetensors: big-endian host");
  if (bytes.size() < 8) {
    return Corrupt(absl::StrCat("file: expected at least 8 bytes, got ", bytes.size(), " (truncated file?)"));
  }
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= uint64_t{static_cast<uint8_t>(bytes[i])} << (8 * i);
  if (n > kMaxHeader || n > bytes.size() - 8) {
    return Corrupt(absl::StrCat("header length: expected at most ", std::min<uint64_t>(kMaxHeader, bytes.size() - 8),
                                " bytes, got ", n, " (truncated file?)"));
  }
  json::ParseOptions po;
  po.max_depth = 8;
  absl::StatusOr<json::Json> header = json::Parse(bytes.substr(8, n), po);
  if (!header.ok()) return Corrupt(absl::StrCat("header: ", header.status().message()));
  if (!header->is_object()) return Corrupt("header: expected a JSON object");
  const absl::string_view data = bytes.substr(8 + n);
  SafetensorsFile file;
  struct Span {
    uint64_t begin, end;
    size_t index;
  };
  std::vector<Span> spans;
  for (const auto& [key, value] : header->items()) {
    if (key == "__metadata__") {
      if (!value.is_object()) return Corrupt("__metadata__: expected an object of strings");
      for (const auto& [k, v] : value.items()) {
        if (!v.is_string()) {
          return Corrupt(absl::StrCat("__metadata__ '", json::Excerpt(k), "': expected a string value"));
        }
        file.metadata[k] = v.get<std::string>();
      }
      continue;
    }
    const std::string where = absl::StrCat("tensor '", json::Excerpt(key), "'");
    if (!value.is_object() || !value.contains("dtype") || !value["dtype"].is_string() || !value.contains("shape") ||
        !value["shape"].is_array() || !value.contains("data_offsets") || !value["data_offsets"].is_array()) {
      return Corrupt(absl::StrCat(where, ": expected dtype (string), shape and data_offsets (arrays)"));
    }
    absl::StatusOr<DType> t = ParseDType(key, value["dtype"].get<std::string>());
    if (!t.ok()) return t.status();
    std::vector<int64_t> dims;
    uint64_t numel = 1;
    for (const json::Json& d : value["shape"]) {
      if (!d.is_number_unsigned()) {  // nlohmann: non-negative integer literals
        return Corrupt(absl::StrCat(where, ": shape: expected integers >= 0"));
      }
      const uint64_t v = d.get<uint64_t>();
      if (v != 0 && numel > (uint64_t{1} << 40) / v) {
        return Corrupt(absl::StrCat(where, ": shape: expected at most 2^40 elements"));
      }
      numel *= v;
      dims.push_back(static_cast<int64_t>(v));
    }
    if (dims.size() > 8) return Corrupt(absl::StrCat(where, ": shape: expected at most 8 dimensions"));
    const json::Json& off = value["data_offsets"];
    auto offset_ok = [](const json::Json& o) {
      return o.is_number_unsigned() && o.get<uint64_t>() <= (uint64_t{1} << 62);
    };
    if (off.size() != 2 || !offset_ok(off[0]) || !offset_ok(off[1]) ||
        off[1].get<uint64_t>() < off[0].get<uint64_t>()) {
      return Corrupt(absl::StrCat(where, ": data_offsets: expected [begin, end] with 0 <= begin <= end"));
    }
    const uint64_t begin = off[0].get<uint64_t>(), end = off[1].get<uint64_t>();
    const uint64_t want = numel * SizeOf(*t);
    if (end - begin != want) {
      return Corrupt(absl::StrCat(where, ": data_offsets: expected ", want, " bytes for shape ", ShapeString(dims),
                                  ", got ", end - begin));
    }
    if (end > data.size()) {
      return Corrupt(absl::StrCat(where, ": data_offsets: expected end <= data size ", data.size(), ", got ", end,
                                  " (truncated file?)"));
    }
    Tensor tensor = Tensor::Zeros(dims, *t);
    if (want > 0) std::memcpy(tensor.raw(), data.data() + begin, want);
    spans.push_back({begin, end, file.tensors.size()});
    file.tensors.emplace_back(key, std::move(tensor));
  }
  std::sort(spans.begin(), spans.end(),
            [](const Span& a, const Span& b) { return a.begin != b.begin ? a.begin < b.begin : a.end < b.end; });
  uint64_t pos = 0;
  for (const Span& s : spans) {
    if (s.begin != pos) {
      return Corrupt(absl::StrCat("tensor '", file.tensors[s.index].first, "': data_offsets: expected begin ", pos,
                                  " (tensors must tile the data), got ", s.begin));
    }
    pos = s.end;
  }
  if (pos != data.size()) {
    return Corrupt(absl::StrCat("data: expected ", pos, " bytes after the header, got ", data.size()));
  }
  return file;
}

absl::Status WriteSafetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                              const std::map<std::string, std::string>& metadata) {
  absl::StatusOr<std::string> bytes = SerializeSafetensors(tensors, metadata);
  if (!bytes.ok()) return bytes.status();
  std::random_device rd;
  const std::string tmp = absl::StrCat(path, ".tmp.", ::getpid(), ".", rd());
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) {
    return absl::UnavailableError(absl::StrCat(tmp, ": cannot open for writing: ", std::strerror(errno)));
  }
  const bool ok = std::fwrite(bytes->data(), 1, bytes->size(), f) == bytes->size() && std::fflush(f) == 0 &&
                  ::fsync(::fileno(f)) == 0;
  const int saved_errno = errno;
  if (std::fclose(f) != 0 || !ok) {
    std::remove(tmp.c_str());
    return absl::UnavailableError(absl::StrCat(tmp, ": write failed: ", std::strerror(saved_errno)));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = errno;
    std::remove(tmp.c_str());
    return absl::UnavailableError(absl::StrCat(path, ": rename failed: ", std::strerror(e)));
  }
  return absl::OkStatus();
}

absl::StatusOr<SafetensorsFile> ReadSafetensors(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::stringstream ss;
  ss << in.rdbuf();
  absl::StatusOr<SafetensorsFile> f = ParseSafetensors(ss.str());
  if (!f.ok()) return absl::Status(f.status().code(), absl::StrCat(path, ": ", f.status().message()));
  return f;
}

}  // namespace tandem::model
