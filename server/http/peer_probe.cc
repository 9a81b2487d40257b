#include "server/http/peer_probe.h"

#include <errno.h>
#include <sys/socket.h>

namespace openelm::server::http_front {

PeerState ProbePeer(int fd) {
  char byte;
  for (;;) {
    const ssize_t n = ::recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n > 0) return PeerState::kBytesWaiting;
    if (n == 0) return PeerState::kGone;  // orderly shutdown
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return PeerState::kQuiet;
    return PeerState::kGone;  // reset, or the socket is no longer usable
  }
}

}  // namespace openelm::server::http_front
