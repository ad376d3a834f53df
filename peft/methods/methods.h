// The method descriptors, one per file in peft/methods/ (the registry in peft/method.cpp lists
// them). Each file holds the method's modules, its attach function and its descriptor.
#pragma once
#include "peft/method.h"

namespace peft::methods {

MethodDescriptor linear_method();       // linear.cpp
MethodDescriptor full_method();         // full.cpp
MethodDescriptor bitfit_method();       // bitfit.cpp
MethodDescriptor vpt_shallow_method();  // vpt.cpp
MethodDescriptor vpt_deep_method();     // vpt.cpp
MethodDescriptor cvpt_method();         // cvpt.cpp
MethodDescriptor ssf_method();          // ssf.cpp
MethodDescriptor lora_method();         // lora.cpp
MethodDescriptor adaptformer_method();  // adaptformer.cpp
MethodDescriptor dora_method();         // dora.cpp
MethodDescriptor ia3_method();          // ia3.cpp
MethodDescriptor fact_method();         // fact.cpp
MethodDescriptor adapter_method();      // adapter.cpp
MethodDescriptor prefix_method();       // prefix.cpp
MethodDescriptor lntune_method();       // lntune.cpp

}  // namespace peft::methods
