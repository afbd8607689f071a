// libLibTorchSharp.so (TorchSharp 0.107) was linked by GCC 13 and asks for one libstdc++ symbol that GCC 12's libstdc++
// (Debian 12) lacks: std::ios_base_library_init(), GCC 13's hook that sets up the standard streams. Older libstdc++
// sets them up from every translation unit that includes <iostream>; this library, preloaded, defines the hook to do
// the same, so the glue library loads. Built and used only where the system's libstdc++ has no GLIBCXX_3.4.32.
#include <ios>

namespace std
{
    void ios_base_library_init()
    {
        static ios_base::Init init;
    }
}
