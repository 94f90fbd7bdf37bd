// The lens on the Llama-shaped families as torch.onnx.export writes them (test/model/torch-parity.ts):
// Mistral, Qwen3's q/k norms, SmolLM3's layers without rotary.
import { torchParityTests } from './torch-parity.js';

torchParityTests(['mistral', 'qwen3', 'smollm3']);
