// -----------------------------------------------------------------------------
// File: raw_client.h
// -----------------------------------------------------------------------------
//
// A bare TCP connection to a loopback port, for tests that talk to the store
// server as something other than a well-behaved client.
#ifndef TANDEM_COMM_STORE_TESTING_RAW_CLIENT_H_
#define TANDEM_COMM_STORE_TESTING_RAW_CLIENT_H_

namespace tandem::comm::testing {

// A socket connected to 127.0.0.1:port, or -1. The caller closes it.
int RawConnect(int port);

}  // namespace tandem::comm::testing

#endif  // TANDEM_COMM_STORE_TESTING_RAW_CLIENT_H_
