#include "engine/kernels/cpu_isa.h"

#include <cpuid.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "oneapi/dnnl/dnnl.h"

namespace openelm {
namespace {

uint64_t ReadXcr0() {
  uint32_t eax = 0, edx = 0;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<uint64_t>(edx) << 32) | eax;
}

bool Bit(uint32_t reg, int bit) { return ((reg >> bit) & 1u) != 0; }

CpuFeatures Detect() {
  CpuFeatures f;
  uint32_t a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid(0, &a, &b, &c, &d) == 0) return f;
  const uint32_t max_leaf = a;
  char vendor[13] = {};
  std::memcpy(vendor, &b, 4);
  std::memcpy(vendor + 4, &d, 4);
  std::memcpy(vendor + 8, &c, 4);
  f.vendor = vendor;

  __get_cpuid(1, &a, &b, &c, &d);
  const bool osxsave = Bit(c, 27);
  f.fma = Bit(c, 12);
  f.f16c = Bit(c, 29);
  const bool avx = Bit(c, 28);
  uint64_t xcr0 = 0;
  if (osxsave) xcr0 = ReadXcr0();
  f.os_saves_avx = avx && (xcr0 & 0x6) == 0x6;                  // XMM, YMM
  f.os_saves_avx512 = f.os_saves_avx && (xcr0 & 0xe0) == 0xe0;  // opmask, ZMM
  f.os_allows_amx = (xcr0 & 0x60000) == 0x60000;                // XTILECFG, XTILEDATA

  if (max_leaf >= 7) {
    __cpuid_count(7, 0, a, b, c, d);
    f.avx2 = Bit(b, 5);
    f.avx512f = Bit(b, 16);
    f.avx512dq = Bit(b, 17);
    f.avx512bw = Bit(b, 30);
    f.avx512vl = Bit(b, 31);
    f.avx512_vnni = Bit(c, 11);
    f.amx_bf16 = Bit(d, 22);
    f.amx_tile = Bit(d, 24);
    f.amx_int8 = Bit(d, 25);
    __cpuid_count(7, 1, a, b, c, d);
    f.avx_vnni = Bit(a, 4);
    f.avx512_bf16 = Bit(a, 5);
  }

  __get_cpuid(0x80000000, &a, &b, &c, &d);
  if (a >= 0x80000004) {
    char brand[49] = {};
    for (uint32_t leaf = 0; leaf < 3; ++leaf) {
      __get_cpuid(0x80000002 + leaf, &a, &b, &c, &d);
      std::memcpy(brand + 16 * leaf, &a, 4);
      std::memcpy(brand + 16 * leaf + 4, &b, 4);
      std::memcpy(brand + 16 * leaf + 8, &c, 4);
      std::memcpy(brand + 16 * leaf + 12, &d, 4);
    }
    f.brand = std::string(absl::StripAsciiWhitespace(brand));
  }
  return f;
}

CpuIsa LevelOf(const CpuFeatures& f) {
  if (!(f.os_saves_avx && f.avx2 && f.fma && f.f16c)) return CpuIsa::kPortable;
  if (!(f.os_saves_avx512 && f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq)) {
    return CpuIsa::kAvx2;
  }
  if (!(f.avx512_bf16 && f.avx512_vnni)) return CpuIsa::kAvx512;
  if (!(f.os_allows_amx && f.amx_tile && f.amx_bf16 && f.amx_int8))
    return CpuIsa::kAvx512Bf16;
  return CpuIsa::kAmx;
}

dnnl_cpu_isa_t OnednnCap(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kPortable:
      return dnnl_cpu_isa_sse41;
    case CpuIsa::kAvx2:
      return dnnl_cpu_isa_avx2;
    case CpuIsa::kAvx512:
      return dnnl_cpu_isa_avx512_core;
    case CpuIsa::kAvx512Bf16:
      return dnnl_cpu_isa_avx512_core_bf16;
    case CpuIsa::kAmx:
      return dnnl_cpu_isa_all;
  }
  return dnnl_cpu_isa_all;
}

// The cap is fixed at the first EffectiveCpuIsa(); -1 = none requested.
std::mutex cap_mu;
int requested_cap = -1;
bool cap_requested_explicitly = false;
std::atomic<int> effective{-1};

CpuIsa FixEffective() {
  std::lock_guard<std::mutex> lock(cap_mu);
  if (effective.load() >= 0) return static_cast<CpuIsa>(effective.load());
  int cap = requested_cap;
  if (!cap_requested_explicitly) {
    const char* env = std::getenv("OPENELM_MAX_CPU_ISA");
    if (env != nullptr && *env != '\0') {
      absl::StatusOr<CpuIsa> parsed = ParseCpuIsa(env);
      // An unknown value is ignored here; the server validates the variable
      // at start-up (SetCpuIsaCap) and refuses to start on it.
      if (parsed.ok()) cap = static_cast<int>(*parsed);
    }
  }
  CpuIsa isa = DetectedCpuIsa();
  if (cap >= 0 && cap < static_cast<int>(isa)) isa = static_cast<CpuIsa>(cap);
  // Before any primitive exists oneDNN accepts the cap; with no cap it keeps
  // its own choice (all).
  if (isa != DetectedCpuIsa()) dnnl_set_max_cpu_isa(OnednnCap(isa));
  effective.store(static_cast<int>(isa));
  return isa;
}

}  // namespace

const CpuFeatures& DetectedCpuFeatures() {
  static const CpuFeatures* features = new CpuFeatures(Detect());
  return *features;
}

CpuIsa DetectedCpuIsa() {
  static const CpuIsa isa = LevelOf(DetectedCpuFeatures());
  return isa;
}

CpuIsa EffectiveCpuIsa() {
  const int e = effective.load(std::memory_order_acquire);
  if (e >= 0) return static_cast<CpuIsa>(e);
  return FixEffective();
}

absl::Status SetCpuIsaCap(absl::string_view name) {
  int cap = -1;
  const std::string lower = absl::AsciiStrToLower(name);
  if (!lower.empty() && lower != "native") {
    absl::StatusOr<CpuIsa> parsed = ParseCpuIsa(lower);
    if (!parsed.ok()) return parsed.status();
    cap = static_cast<int>(*parsed);
  }
  {
    std::lock_guard<std::mutex> lock(cap_mu);
    if (effective.load() < 0) {
      requested_cap = cap;
      cap_requested_explicitly = true;
      return absl::OkStatus();
    }
  }
  const CpuIsa detected = DetectedCpuIsa();
  const CpuIsa wanted =
      cap >= 0 && cap < static_cast<int>(detected) ? static_cast<CpuIsa>(cap) : detected;
  if (wanted != EffectiveCpuIsa()) {
    return absl::FailedPreconditionError(
        absl::StrCat("the CPU ISA cap can only be set before the first kernel is chosen; "
                     "it is already ",
                     CpuIsaName(EffectiveCpuIsa())));
  }
  return absl::OkStatus();
}

const char* CpuIsaName(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kPortable:
      return "portable";
    case CpuIsa::kAvx2:
      return "avx2";
    case CpuIsa::kAvx512:
      return "avx512";
    case CpuIsa::kAvx512Bf16:
      return "avx512_bf16";
    case CpuIsa::kAmx:
      return "amx";
  }
  return "?";
}

absl::StatusOr<CpuIsa> ParseCpuIsa(absl::string_view name) {
  const std::string lower = absl::AsciiStrToLower(name);
  for (CpuIsa isa : {CpuIsa::kPortable, CpuIsa::kAvx2, CpuIsa::kAvx512,
                     CpuIsa::kAvx512Bf16, CpuIsa::kAmx}) {
    if (lower == CpuIsaName(isa)) return isa;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown CPU ISA \"", name,
                   "\": expected portable, avx2, avx512, avx512_bf16 or amx"));
}

std::string OnednnEffectiveIsa() {
  EffectiveCpuIsa();  // apply the cap first
  switch (dnnl_get_effective_cpu_isa()) {
    case dnnl_cpu_isa_sse41:
      return "sse41";
    case dnnl_cpu_isa_avx:
      return "avx";
    case dnnl_cpu_isa_avx2:
      return "avx2";
    case dnnl_cpu_isa_avx2_vnni:
      return "avx2_vnni";
    case dnnl_cpu_isa_avx512_core:
      return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni:
      return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16:
      return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx:
      return "avx512_core_amx";
    default:
      return "other";
  }
}

std::string DescribeCpu() {
  const CpuFeatures& f = DetectedCpuFeatures();
  std::string features;
  auto add = [&](bool on, const char* name) {
    if (on) absl::StrAppend(&features, features.empty() ? "" : " ", name);
  };
  add(f.avx2, "avx2");
  add(f.fma, "fma");
  add(f.f16c, "f16c");
  add(f.avx512f, "avx512f");
  add(f.avx512bw, "avx512bw");
  add(f.avx512vl, "avx512vl");
  add(f.avx512dq, "avx512dq");
  add(f.avx512_vnni, "avx512_vnni");
  add(f.avx512_bf16, "avx512_bf16");
  add(f.avx_vnni, "avx_vnni");
  add(f.amx_tile && f.os_allows_amx, "amx_tile");
  add(f.amx_bf16 && f.os_allows_amx, "amx_bf16");
  add(f.amx_int8 && f.os_allows_amx, "amx_int8");
  const CpuIsa eff = EffectiveCpuIsa();
  return absl::StrCat("CPU \"", f.brand.empty() ? f.vendor : f.brand, "\": detected ",
                      CpuIsaName(DetectedCpuIsa()), ", effective ", CpuIsaName(eff),
                      eff != DetectedCpuIsa() ? " (capped)" : "", ", oneDNN ",
                      OnednnEffectiveIsa(), "; features: ", features);
}

}  // namespace openelm
