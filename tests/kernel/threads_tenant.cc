// mk-threads-tenant N: a tenant with N + 1 threads (cpu_image_test.cc): it
// starts N threads that sleep, then sleeps itself until killed.
#include <unistd.h>

#include <cstdlib>
#include <thread>
#include <vector>

int main(int argc, char** argv) {
  const int n = argc > 1 ? std::atoi(argv[1]) : 3;
  std::vector<std::thread> ts;
  for (int i = 0; i < n; ++i) ts.emplace_back([] {
    for (;;) ::pause();
  });
  for (;;) ::pause();
}
