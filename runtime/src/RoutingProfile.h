//===- RoutingProfile.h - counts of what the routers chose ------*- C++ -*-===//
//
// The runtime's routing profile (docs/RoutingProfiles.md): the C API in
// runtime.h forwards here. Errors are moe::rt::Error exceptions.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_RUNTIME_ROUTINGPROFILE_H
#define MOE_RUNTIME_ROUTINGPROFILE_H

#include <cstdint>
#include <string>

namespace moe::rt {

/// Starts counting the routes modules report, from zero.
void startRoutingProfile();
/// Stops counting; the counts stay until the next start.
void stopRoutingProfile();
/// Route reports counted since the start.
int64_t routingProfileRecords();
/// Writes the counts as JSON to `path`, with `merge` added to the profile
/// already there (if any).
void writeRoutingProfile(const std::string &path, bool merge);

} // namespace moe::rt

#endif // MOE_RUNTIME_ROUTINGPROFILE_H
