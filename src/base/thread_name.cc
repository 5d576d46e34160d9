#include "base/thread_name.h"

#include <pthread.h>

namespace mte {

void SetThreadName(const char* name) {
  static_cast<void>(pthread_setname_np(pthread_self(), name));
}

}  // namespace mte
