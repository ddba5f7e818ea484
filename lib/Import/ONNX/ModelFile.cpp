//===- ModelFile.cpp - ONNX files read with their weights left in place ----===//

#include "ModelFile.h"

#include "llvm/Support/Path.h"
#include "llvm/Support/Process.h"

#include <cerrno>
#include <cstring>
#include <unistd.h>
#include <google/protobuf/io/zero_copy_stream_impl.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif

using namespace mlir;
using namespace mlir::moe::onnx_import;

namespace {

// Field numbers of onnx.proto and the protobuf wire types used below.
constexpr uint32_t kModelGraph = 7;
constexpr uint32_t kGraphInitializer = 5;
constexpr uint32_t kTensorRawData = 9;
constexpr uint32_t kTensorExternalData = 13;
constexpr uint32_t kTensorDataLocation = 14;
constexpr uint32_t kEntryKey = 1, kEntryValue = 2;
enum WireType : uint32_t { Varint = 0, Fixed64 = 1, Bytes = 2, Fixed32 = 5 };

/// Re-serialises a ModelProto with its initializers' large raw_data fields
/// replaced by external-data references to the file itself. Reads the
/// protobuf wire format by hand (three message levels deep); anything it
/// does not expect makes it give up, and the caller parses the file whole.
class RawDataStripper {
public:
  RawDataStripper(llvm::StringRef file, std::string location, uint64_t minBytes)
      : base(reinterpret_cast<const uint8_t *>(file.data())),
        end(base + file.size()), location(std::move(location)),
        minBytes(minBytes) {}

  std::optional<std::string> run() {
    std::string out;
    if (!message(base, end, /*level=*/0, out))
      return std::nullopt;
    return out;
  }

private:
  const uint8_t *base, *end;
  std::string location;
  uint64_t minBytes;

  static bool varint(const uint8_t *&p, const uint8_t *limit, uint64_t &v) {
    v = 0;
    for (int shift = 0; shift < 64 && p < limit; shift += 7) {
      uint8_t byte = *p++;
      v |= uint64_t(byte & 0x7f) << shift;
      if (!(byte & 0x80))
        return true;
    }
    return false;
  }
  static void putVarint(std::string &out, uint64_t v) {
    while (v >= 0x80) {
      out.push_back(char(v | 0x80));
      v >>= 7;
    }
    out.push_back(char(v));
  }
  static void putBytes(std::string &out, uint32_t field, llvm::StringRef bytes) {
    putVarint(out, (uint64_t(field) << 3) | Bytes);
    putVarint(out, bytes.size());
    out.append(bytes.data(), bytes.size());
  }
  void putExternalEntry(std::string &out, llvm::StringRef key,
                        llvm::StringRef value) {
    std::string entry;
    putBytes(entry, kEntryKey, key);
    putBytes(entry, kEntryValue, value);
    putBytes(out, kTensorExternalData, entry);
  }

  /// Copies the message in [p, limit) into `out`; level 0 is a ModelProto,
  /// 1 its GraphProto, 2 an initializer (TensorProto).
  bool message(const uint8_t *p, const uint8_t *limit, int level,
               std::string &out) {
    int rawDataFields = 0;
    while (p < limit) {
      const uint8_t *start = p;
      uint64_t tag;
      if (!varint(p, limit, tag))
        return false;
      uint32_t field = tag >> 3, wire = tag & 7;
      uint64_t length = 0;
      switch (wire) {
      case Varint:
        if (!varint(p, limit, length))
          return false;
        break;
      case Fixed64:
      case Fixed32: {
        uint64_t size = wire == Fixed64 ? 8 : 4;
        if (uint64_t(limit - p) < size)
          return false;
        p += size;
        break;
      }
      case Bytes:
        if (!varint(p, limit, length) || length > uint64_t(limit - p))
          return false;
        break;
      default:
        return false; // groups: not in onnx.proto
      }
      bool nested = wire == Bytes &&
                    ((level == 0 && field == kModelGraph) ||
                     (level == 1 && field == kGraphInitializer));
      if (nested) {
        std::string inner;
        if (!message(p, p + length, level + 1, inner))
          return false;
        putBytes(out, field, inner);
        p += length;
        continue;
      }
      if (level == 2 && field == kTensorRawData && wire == Bytes) {
        if (++rawDataFields > 1)
          return false;
        if (length >= minBytes) {
          // The tensor's bytes stay where they are in the file.
          putExternalEntry(out, "location", location);
          putExternalEntry(out, "offset", std::to_string(p - base));
          putExternalEntry(out, "length", std::to_string(length));
          putVarint(out, (uint64_t(kTensorDataLocation) << 3) | Varint);
          putVarint(out, 1); // TensorProto::EXTERNAL
          p += length;
          continue;
        }
      }
      if (wire == Bytes)
        p += length;
      out.append(reinterpret_cast<const char *>(start), p - start);
    }
    return p == limit;
  }
};

/// Drops the whole pages of [data, data + size) from this process's memory
/// (they are read from the file again if touched).
void dropPages(const char *data, size_t size) {
#if defined(__linux__)
  uintptr_t page = llvm::sys::Process::getPageSizeEstimate();
  uintptr_t first = llvm::alignTo(uintptr_t(data), page);
  uintptr_t last = llvm::alignDown(uintptr_t(data) + size, page);
  if (last > first)
    ::madvise(reinterpret_cast<void *>(first), last - first, MADV_DONTNEED);
#endif
}

} // namespace

std::shared_ptr<llvm::sys::fs::mapped_file_region>
ModelFiles::map(llvm::StringRef file, std::string &error) {
  auto it = mappings.find(file);
  if (it != mappings.end())
    return it->second;
  int fd = -1;
  if (std::error_code ec = llvm::sys::fs::openFileForRead(file, fd)) {
    error = ec.message();
    return nullptr;
  }
  llvm::sys::fs::file_status status;
  std::error_code ec = llvm::sys::fs::status(fd, status);
  std::shared_ptr<llvm::sys::fs::mapped_file_region> region;
  if (!ec && status.getSize() != 0) {
    region = std::make_shared<llvm::sys::fs::mapped_file_region>(
        llvm::sys::fs::convertFDToNativeFile(fd),
        llvm::sys::fs::mapped_file_region::readonly, status.getSize(), 0, ec);
  }
  llvm::sys::Process::SafelyCloseFileDescriptor(fd);
  if (ec || !region || !*region) {
    error = ec ? "cannot map it: " + ec.message() : "the file is empty";
    return nullptr;
  }
  mappings[file] = region;
  return region;
}

std::optional<std::string> ModelFiles::read(llvm::StringRef path,
                                            uint64_t minBytes,
                                            onnx::ModelProto &model) {
  std::string error;
  std::shared_ptr<llvm::sys::fs::mapped_file_region> region = map(path, error);
  if (!region && !llvm::sys::fs::exists(path))
    return "cannot read '" + path.str() + "': " + error;
  if (region && region->size() <= size_t(INT32_MAX)) {
    llvm::StringRef file(region->const_data(), region->size());
    RawDataStripper stripper(file, llvm::sys::path::filename(path).str(),
                             std::max<uint64_t>(minBytes, 1));
    if (std::optional<std::string> stripped = stripper.run())
      if (model.ParseFromString(*stripped))
        return std::nullopt;
    model.Clear();
  }
  // Not a protobuf the scan understands (or not mappable): a plain parse,
  // in small reads, says what is wrong with it or reads it anyway.
  int fd = -1;
  if (std::error_code ec = llvm::sys::fs::openFileForRead(path, fd))
    return "cannot read '" + path.str() + "': " + ec.message();
  google::protobuf::io::FileInputStream stream(fd);
  stream.SetCloseOnDelete(true);
  if (model.ParseFromZeroCopyStream(&stream))
    return std::nullopt;
  if (stream.GetErrno() != 0)
    return "cannot read '" + path.str() + "': " + std::strerror(stream.GetErrno());
  return "'" + path.str() +
         "' is not a valid ONNX model (the protobuf does not parse)";
}

ModelFiles::~ModelFiles() {
  if (storeFD >= 0)
    llvm::sys::Process::SafelyCloseFileDescriptor(storeFD);
}

FailureOr<AsmResourceBlob> ModelFiles::store(ArrayRef<char> bytes) {
  if (storeFD == -1) {
    llvm::SmallString<128> path;
    storeFD = -2;
    int fd;
    if (!llvm::sys::fs::createTemporaryFile("moe-weights", "bin", fd, path)) {
      // Unlinked now: the file lives as long as the descriptor and the
      // mappings do.
      llvm::sys::fs::remove(path);
      storeFD = fd;
    }
  }
  if (storeFD < 0 || bytes.empty())
    return failure();
  // Each weight at a page boundary: its mapping starts there, and its
  // pages are its own (dropping them leaves the neighbours alone).
  uint64_t page = llvm::sys::Process::getPageSizeEstimate();
  uint64_t offset = llvm::alignTo(storeBytes, page);
  for (uint64_t done = 0; done < bytes.size();) {
    ssize_t n = ::pwrite(storeFD, bytes.data() + done, bytes.size() - done,
                         offset + done);
    if (n <= 0) {
      if (n < 0 && errno == EINTR)
        continue;
      return failure();
    }
    done += n;
  }
  std::error_code ec;
  auto region = std::make_shared<llvm::sys::fs::mapped_file_region>(
      llvm::sys::fs::convertFDToNativeFile(storeFD),
      llvm::sys::fs::mapped_file_region::readonly, bytes.size(), offset, ec);
  if (ec || !*region)
    return failure();
  storeBytes = offset + bytes.size();
  return AsmResourceBlob(
      ArrayRef<char>(region->const_data(), bytes.size()),
      /*dataAlignment=*/16,
      [region](void *data, size_t size, size_t) {
        dropPages(static_cast<const char *>(data), size);
      },
      /*dataIsMutable=*/false);
}

void ModelFiles::evict(ArrayRef<char> bytes) const {
  for (const auto &entry : mappings) {
    const char *begin = entry.second->const_data();
    if (bytes.data() >= begin &&
        bytes.data() + bytes.size() <= begin + entry.second->size()) {
      dropPages(bytes.data(), bytes.size());
      return;
    }
  }
}

FailureOr<AsmResourceBlob> ModelFiles::view(llvm::StringRef file,
                                            uint64_t offset, uint64_t length,
                                            std::string &error) {
  std::shared_ptr<llvm::sys::fs::mapped_file_region> region = map(file, error);
  if (!region)
    return failure();
  if (offset > region->size() || length > region->size() - offset) {
    error = "it holds " + std::to_string(region->size()) + " bytes; need " +
            std::to_string(length) + " at offset " + std::to_string(offset);
    return failure();
  }
  const char *data = region->const_data() + offset;
  // The region stays mapped while any view lives; a released view's pages
  // leave memory (their bytes were copied, or written to the object).
  return AsmResourceBlob(
      ArrayRef<char>(data, length), /*dataAlignment=*/1,
      [region](void *data, size_t size, size_t) {
        dropPages(static_cast<const char *>(data), size);
      },
      /*dataIsMutable=*/false);
}
