//===- MpiCommunicator.cpp - moe_communicator over MPI --------------------===//
//
// libmoe_runtime_mpi.so (moe/runtime_mpi.h). The all-to-all-v requests of
// compiled modules go to a communication thread that owns one duplicate of
// MPI_COMM_WORLD: it issues MPI_Ialltoallv in the order the requests were
// started (the same order on every rank, as MPI requires of collectives on
// one communicator) and polls MPI_Test until they complete, so progress
// never depends on the compute threads entering MPI. Waiters block on a
// condition variable with a deadline.
//
// Counts travel in units: a contiguous datatype of unit_bytes bytes keeps
// the int counts and displacements of MPI_Ialltoallv in units rather than
// bytes, which would overflow int long before the buffers get large.
//
//===----------------------------------------------------------------------===//

#include "moe/runtime_mpi.h"

#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

struct Request {
  const void *send = nullptr;
  void *recv = nullptr;
  int64_t unitBytes = 0;
  // MPI reads these until the request completes: owned here, not by the
  // caller.
  std::vector<int> sendCounts, sendDispls, recvCounts, recvDispls;
  MPI_Request mpi = MPI_REQUEST_NULL;
  bool done = false;
};

struct State {
  std::string program = "moe";
  int rank = 0, size = 1;
  double timeout = 120;
  bool initializedMpi = false;
  MPI_Comm a2aComm = MPI_COMM_NULL;    // the communication thread's
  MPI_Comm helperComm = MPI_COMM_NULL; // barrier / allreduce / gather
  moe_communicator comm{};

  std::mutex mutex;
  std::condition_variable wake;     // new work or stop, for the thread
  std::condition_variable finished; // a request completed, for waiters
  std::deque<Request *> pending;
  std::map<int64_t, std::unique_ptr<Request>> requests;
  int64_t nextId = 1;
  bool stop = false;
  std::thread thread;
};

State *state = nullptr;

[[noreturn]] void abortJob(const std::string &msg) {
  const std::string program = state ? state->program : "moe";
  const int rank = state ? state->rank : -1;
  std::fprintf(stderr, "%s: rank %d: %s\n", program.c_str(), rank, msg.c_str());
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, 1);
  std::abort(); // MPI_Abort does not return; in case it does anyway
}

std::string mpiError(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(code, text, &len);
  return std::string(text, len);
}

void checkMpi(int code, const char *what) {
  if (code != MPI_SUCCESS)
    abortJob(std::string(what) + " failed: " + mpiError(code));
}

/// The communication thread: issues pending requests, tests active ones.
void progressLoop(State *s) {
  std::map<int64_t, MPI_Datatype> types;
  std::vector<Request *> active;
  int idleRounds = 0;
  while (true) {
    std::vector<Request *> fresh;
    {
      std::unique_lock<std::mutex> lock(s->mutex);
      if (active.empty())
        s->wake.wait(lock, [&] { return s->stop || !s->pending.empty(); });
      if (s->stop && s->pending.empty() && active.empty())
        break;
      fresh.assign(s->pending.begin(), s->pending.end());
      s->pending.clear();
    }
    for (Request *r : fresh) {
      auto found = types.find(r->unitBytes);
      if (found == types.end()) {
        MPI_Datatype made;
        checkMpi(MPI_Type_contiguous(static_cast<int>(r->unitBytes), MPI_BYTE,
                                     &made),
                 "all-to-all-v: MPI_Type_contiguous");
        checkMpi(MPI_Type_commit(&made), "all-to-all-v: MPI_Type_commit");
        found = types.emplace(r->unitBytes, made).first;
      }
      MPI_Datatype type = found->second;
      checkMpi(MPI_Ialltoallv(r->send, r->sendCounts.data(),
                              r->sendDispls.data(), type, r->recv,
                              r->recvCounts.data(), r->recvDispls.data(), type,
                              s->a2aComm, &r->mpi),
               "all-to-all-v: MPI_Ialltoallv");
      active.push_back(r);
    }
    bool progressed = !fresh.empty();
    for (size_t i = 0; i < active.size();) {
      int flag = 0;
      checkMpi(MPI_Test(&active[i]->mpi, &flag, MPI_STATUS_IGNORE),
               "all-to-all-v: MPI_Test");
      if (!flag) {
        ++i;
        continue;
      }
      {
        std::lock_guard<std::mutex> lock(s->mutex);
        active[i]->done = true;
      }
      s->finished.notify_all();
      active.erase(active.begin() + i);
      progressed = true;
    }
    // Poll hard while data moves, back off while a peer is late: the
    // thread shares the cores with the compute threads.
    idleRounds = progressed ? 0 : idleRounds + 1;
    if (!active.empty() && idleRounds > 64)
      std::this_thread::sleep_for(
          std::chrono::microseconds(std::min(idleRounds - 64, 100)));
  }
  for (auto &t : types)
    MPI_Type_free(&t.second);
}

int64_t allToAllVStart(void *ctx, const void *send, const int32_t *sendCounts,
                       void *recv, const int32_t *recvCounts,
                       int64_t unitBytes) {
  State *s = static_cast<State *>(ctx);
  if (unitBytes < 1 || unitBytes > INT_MAX)
    abortJob("all-to-all-v: unit_bytes " + std::to_string(unitBytes) +
             " is outside [1, " + std::to_string(INT_MAX) + "]");
  auto r = std::make_unique<Request>();
  r->send = send;
  r->recv = recv;
  r->unitBytes = unitBytes;
  auto fill = [&](const int32_t *counts, std::vector<int> &c,
                  std::vector<int> &d, const char *what) {
    int64_t offset = 0;
    for (int p = 0; p < s->size; ++p) {
      if (counts[p] < 0)
        abortJob(std::string("all-to-all-v: ") + what + "_counts[" +
                 std::to_string(p) + "] is negative (" +
                 std::to_string(counts[p]) + ")");
      if (offset > INT_MAX)
        abortJob(std::string("all-to-all-v: the ") + what +
                 " buffer holds more than INT_MAX units");
      c.push_back(counts[p]);
      d.push_back(static_cast<int>(offset));
      offset += counts[p];
    }
  };
  fill(sendCounts, r->sendCounts, r->sendDispls, "send");
  fill(recvCounts, r->recvCounts, r->recvDispls, "recv");
  int64_t id;
  {
    std::lock_guard<std::mutex> lock(s->mutex);
    id = s->nextId++;
    s->pending.push_back(r.get());
    s->requests[id] = std::move(r);
  }
  s->wake.notify_one();
  return id;
}

void allToAllVWait(void *ctx, int64_t id) {
  State *s = static_cast<State *>(ctx);
  std::unique_lock<std::mutex> lock(s->mutex);
  auto it = s->requests.find(id);
  if (it == s->requests.end())
    abortJob("all-to-all-v: wait for unknown request " + std::to_string(id) +
             " (never started, or waited for already)");
  Request *r = it->second.get();
  auto deadline = std::chrono::steady_clock::now() +
                  std::chrono::duration_cast<std::chrono::nanoseconds>(
                      std::chrono::duration<double>(s->timeout));
  if (!s->finished.wait_until(lock, deadline, [&] { return r->done; })) {
    char secs[32];
    std::snprintf(secs, sizeof secs, "%g", s->timeout);
    lock.unlock();
    abortJob(std::string("all-to-all-v did not complete within ") + secs +
             " s (a peer rank failed or is stuck)");
  }
  s->requests.erase(it);
}

void setError(char *error, size_t size, const std::string &msg) {
  if (!error || size == 0)
    return;
  size_t n = std::min(size - 1, msg.size());
  std::memcpy(error, msg.data(), n);
  error[n] = '\0';
}

} // namespace

extern "C" {

int moe_mpi_init(int *argc, char ***argv, const char *program, double timeoutS,
                 char *error, size_t errorSize) {
  if (state) {
    setError(error, errorSize, "moe_mpi_init called twice");
    return -1;
  }
  double timeout = timeoutS;
  if (!(timeout > 0)) {
    timeout = 120;
    if (const char *env = std::getenv("MOE_COMM_TIMEOUT"); env && *env) {
      char *end = nullptr;
      double v = std::strtod(env, &end);
      if (*end != '\0' || !(v > 0)) {
        setError(error, errorSize,
                 std::string("MOE_COMM_TIMEOUT must be a positive number of "
                             "seconds, not '") +
                     env + "'");
        return -1;
      }
      timeout = v;
    }
  }
  auto s = std::make_unique<State>();
  if (program && *program)
    s->program = program;
  s->timeout = timeout;
  int initialized = 0;
  MPI_Initialized(&initialized);
  int provided = 0;
  if (!initialized) {
    if (MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided) !=
        MPI_SUCCESS) {
      setError(error, errorSize, "MPI_Init_thread failed");
      return -1;
    }
    s->initializedMpi = true;
  } else {
    MPI_Query_thread(&provided);
  }
  if (provided < MPI_THREAD_MULTIPLE) {
    setError(error, errorSize,
             "the MPI library does not provide MPI_THREAD_MULTIPLE (provided "
             "level " +
                 std::to_string(provided) +
                 "), which the communication thread needs");
    if (s->initializedMpi)
      MPI_Finalize();
    return -1;
  }
  MPI_Comm_rank(MPI_COMM_WORLD, &s->rank);
  MPI_Comm_size(MPI_COMM_WORLD, &s->size);
  state = s.release();
  // Errors come back as codes, so that the message can say which rank and
  // which collective failed before the job is aborted.
  checkMpi(MPI_Comm_dup(MPI_COMM_WORLD, &state->a2aComm), "MPI_Comm_dup");
  checkMpi(MPI_Comm_dup(MPI_COMM_WORLD, &state->helperComm), "MPI_Comm_dup");
  MPI_Comm_set_errhandler(state->a2aComm, MPI_ERRORS_RETURN);
  MPI_Comm_set_errhandler(state->helperComm, MPI_ERRORS_RETURN);
  state->comm.ctx = state;
  state->comm.rank = state->rank;
  state->comm.size = state->size;
  state->comm.all_to_all_v_start = allToAllVStart;
  state->comm.wait = allToAllVWait;
  state->thread = std::thread(progressLoop, state);
  return 0;
}

void moe_mpi_finalize(void) {
  if (!state)
    return;
  {
    std::lock_guard<std::mutex> lock(state->mutex);
    state->stop = true;
  }
  state->wake.notify_one();
  state->thread.join();
  MPI_Comm_free(&state->a2aComm);
  MPI_Comm_free(&state->helperComm);
  if (state->initializedMpi)
    MPI_Finalize();
  delete state;
  state = nullptr;
}

int64_t moe_mpi_rank(void) { return state ? state->rank : 0; }
int64_t moe_mpi_size(void) { return state ? state->size : 1; }
double moe_mpi_timeout(void) { return state ? state->timeout : 0; }

const moe_communicator *moe_mpi_communicator(void) {
  return state ? &state->comm : nullptr;
}

void moe_mpi_barrier(void) {
  if (state)
    checkMpi(MPI_Barrier(state->helperComm), "MPI_Barrier");
}

double moe_mpi_allreduce_max(double value) {
  if (!state)
    return value;
  double out = value;
  checkMpi(
      MPI_Allreduce(&value, &out, 1, MPI_DOUBLE, MPI_MAX, state->helperComm),
      "MPI_Allreduce");
  return out;
}

int64_t moe_mpi_allreduce_sum(int64_t value) {
  if (!state)
    return value;
  int64_t out = value;
  checkMpi(
      MPI_Allreduce(&value, &out, 1, MPI_INT64_T, MPI_SUM, state->helperComm),
      "MPI_Allreduce");
  return out;
}

int64_t moe_mpi_gather_rows(const void *send, int64_t rows, int64_t rowBytes,
                            void *recv, int64_t recvRows) {
  if (!state) {
    if (rows > recvRows)
      abortJob("gather: " + std::to_string(rows) + " rows do not fit in " +
               std::to_string(recvRows));
    if (rows > 0 && rowBytes > 0)
      std::memmove(recv, send, static_cast<size_t>(rows * rowBytes));
    return rows;
  }
  State *s = state;
  // Every rank learns every count and row size, so that all of them take
  // the same decision below (no rank may skip the Gatherv alone).
  int64_t mine[2] = {rows, rowBytes};
  std::vector<int64_t> all(2 * static_cast<size_t>(s->size));
  checkMpi(MPI_Allgather(mine, 2, MPI_INT64_T, all.data(), 2, MPI_INT64_T,
                         s->helperComm),
           "gather: MPI_Allgather");
  int64_t total = 0;
  std::vector<int> counts(s->size), displs(s->size);
  for (int p = 0; p < s->size; ++p) {
    if (all[2 * p + 1] != rowBytes)
      abortJob("gather: rank " + std::to_string(p) + " sends rows of " +
               std::to_string(all[2 * p + 1]) + " bytes, this rank of " +
               std::to_string(rowBytes));
    if (all[2 * p] < 0 || all[2 * p] > INT_MAX || total > INT_MAX)
      abortJob("gather: more than INT_MAX rows");
    counts[p] = static_cast<int>(all[2 * p]);
    displs[p] = static_cast<int>(total);
    total += all[2 * p];
  }
  if (s->rank == 0 && total > recvRows)
    abortJob("gather: " + std::to_string(total) + " rows do not fit in " +
             std::to_string(recvRows));
  if (rowBytes == 0 || total == 0)
    return s->rank == 0 ? total : rows;
  if (rowBytes > INT_MAX)
    abortJob("gather: rows of " + std::to_string(rowBytes) +
             " bytes exceed INT_MAX");
  MPI_Datatype row;
  checkMpi(MPI_Type_contiguous(static_cast<int>(rowBytes), MPI_BYTE, &row),
           "gather: MPI_Type_contiguous");
  checkMpi(MPI_Type_commit(&row), "gather: MPI_Type_commit");
  checkMpi(MPI_Gatherv(send, static_cast<int>(rows), row, recv, counts.data(),
                       displs.data(), row, 0, s->helperComm),
           "gather: MPI_Gatherv");
  MPI_Type_free(&row);
  return s->rank == 0 ? total : rows;
}

void moe_mpi_broadcast(void *data, size_t bytes, int root) {
  if (!state || bytes == 0)
    return;
  if (root < 0 || root >= state->size)
    abortJob("broadcast: root " + std::to_string(root) + " is outside [0, " +
             std::to_string(state->size) + ")");
  // In chunks of at most INT_MAX bytes: MPI counts are int.
  char *p = static_cast<char *>(data);
  for (size_t done = 0; done < bytes;) {
    int n = static_cast<int>(std::min<size_t>(bytes - done, INT_MAX));
    checkMpi(MPI_Bcast(p + done, n, MPI_BYTE, root, state->helperComm),
             "broadcast: MPI_Bcast");
    done += static_cast<size_t>(n);
  }
}

void moe_mpi_abort(const char *message) { abortJob(message ? message : ""); }

} // extern "C"
