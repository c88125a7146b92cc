// The TCP store as a process of its own, for launchers that must outlive
// their ranks (comm/launch --elastic): serves any world size on --host and
// --port (0: a free port), with the job token of TANDEM_JOB_TOKEN, prints
// "store_server: port P" once listening, and runs until SIGTERM or SIGINT.
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "comm/store/tcp_store.h"

ABSL_FLAG(std::string, host, "127.0.0.1", "Address to listen on.");
ABSL_FLAG(int, port, 0, "Port (0: a free one).");

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);  // before the server's threads start
  tandem::comm::TcpStoreServerOptions options;
  if (const char* token = std::getenv("TANDEM_JOB_TOKEN"); token != nullptr) options.job_token = token;
  absl::StatusOr<std::unique_ptr<tandem::comm::TcpStoreServer>> server =
      tandem::comm::TcpStoreServer::Start(absl::GetFlag(FLAGS_host), absl::GetFlag(FLAGS_port), 0, options);
  if (!server.ok()) {
    std::fprintf(stderr, "store_server: %s\n", std::string(server.status().message()).c_str());
    return 1;
  }
  std::printf("store_server: port %d\n", (*server)->port());
  std::fflush(stdout);
  int signal = 0;
  sigwait(&stop, &signal);
  return 0;
}
